//! Printing helpers shared by commands: JSON output, tables whose columns line
//! up by display width (a Chinese character takes two columns), and progress
//! bars that appear only on a terminal.

use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A plain table — no borders, columns two spaces apart — laid out by each
/// cell's display width (comfy-table measures Chinese as two columns), with
/// no trailing spaces.
pub fn table<R, C>(header: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = Vec<C>>,
    C: Into<comfy_table::Cell>,
{
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    // Padding of one column on each side: two spaces between columns, and
    // one at the start of every line, taken off here.
    table
        .lines()
        .map(|line| {
            let line = line.strip_prefix(' ').unwrap_or(&line).trim_end();
            line.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether progress may be drawn: only on a terminal, and never into
/// `--json` output.
fn progress_allowed(json: bool) -> bool {
    !json && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// A progress bar of `len` steps on stderr, labelled `label` (Chinese, then
/// English); hidden when stderr is not a terminal or `json` is set.
pub fn bar(len: u64, label: &str, json: bool) -> indicatif::ProgressBar {
    if !progress_allowed(json) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{label} {{bar:40}} {{pos}}/{{len}} {{msg}} {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// A progress bar in bytes on stderr (a backup read or written), its length
/// set by the first report; hidden when stderr is not a terminal or `json`
/// is set.
pub fn bytes_bar(label: &str, json: bool) -> indicatif::ProgressBar {
    if !progress_allowed(json) {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{label} {{bar:40}} {{bytes}}/{{total_bytes}} {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// A spinner on stderr for one long step whose size is not known ahead
/// (a backup, a restore, an export); hidden when stderr is not a terminal
/// or `json` is set. Clear it with `finish_and_clear` before printing.
pub fn spinner(label: &str, json: bool) -> indicatif::ProgressBar {
    if !progress_allowed(json) {
        return indicatif::ProgressBar::hidden();
    }
    let spinner =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    spinner.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    spinner.set_message(label.to_string());
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Display width: two columns for CJK and full-width characters.
    fn width(text: &str) -> usize {
        text.chars()
            .map(|c| match c as u32 {
                0x1100..=0x115F
                | 0x2E80..=0xA4CF
                | 0xAC00..=0xD7A3
                | 0xF900..=0xFAFF
                | 0xFE30..=0xFE4F
                | 0xFF00..=0xFF60
                | 0xFFE0..=0xFFE6 => 2,
                _ => 1,
            })
            .sum()
    }

    /// The display column at which each cell of `line` starts (cells are two
    /// or more spaces apart, and hold no two spaces in a row).
    fn starts(line: &str) -> Vec<usize> {
        let mut starts = vec![0];
        let mut at = 0;
        let mut spaces = 0;
        for c in line.chars() {
            if c == ' ' {
                spaces += 1;
            } else {
                if spaces >= 2 {
                    starts.push(at);
                }
                spaces = 0;
            }
            at += width(&c.to_string());
        }
        starts
    }

    #[test]
    fn chinese_columns_line_up_by_display_width() {
        let rows = vec![
            vec![
                "440106001-20261128-K7Q2XM",
                "已受理 accepted",
                "2026-12-03",
                "张**",
                "130102001",
            ],
            vec![
                "440106001-20261128-A1B2C3",
                "审定 decided",
                "—",
                "欧阳**",
                "130102001",
            ],
            vec![
                "440106001-20261128-Z9Y8X7",
                "草稿 draft",
                "2026-12-01* 超时",
                "Li**",
                "130102001",
            ],
        ];
        let text = table(
            &["案件 case", "阶段 stage", "时限 due", "申请人", "户籍地"],
            rows,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let first = starts(lines[0]);
        assert_eq!(first.len(), 5, "{text}");
        for line in &lines {
            assert_eq!(starts(line), first, "columns do not line up:\n{text}");
            assert_eq!(line.trim_end(), *line, "trailing spaces:\n{text}");
        }
        // Counted in chars, the columns would not line up: the test can fail.
        let by_chars: Vec<usize> = lines
            .iter()
            .map(|l| l.find("130102001").unwrap_or(0))
            .collect();
        assert!(by_chars.windows(2).any(|w| w[0] != w[1]), "{text}");
    }

    #[test]
    fn no_progress_into_json_or_a_pipe() {
        assert!(bar(10, "测试 test", true).is_hidden());
        assert!(spinner("测试 test", true).is_hidden());
    }
}
