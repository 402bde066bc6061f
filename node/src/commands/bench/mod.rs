//! `tongban bench SCENARIO`: measures the machine a hub will run on, as
//! `pgbench` or `fio` do — real nodes, real QUIC on loopback, real redb in a
//! temporary directory, realistic finished cases (`tongban_node::fixture`) —
//! and prints each figure beside a floor measured in the same run.
//!
//! A bench command rather than criterion: one initial sync of 100,000
//! documents is the measurement, and an operator runs it on the machine in
//! question with the binary that will run there.

mod open;
mod sync;
mod verify;
mod world;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::cli::{BenchArgs, BenchScenario};

/// What every scenario shares.
pub struct Ctx {
    /// Where to build the nodes (kept), or a temporary directory.
    pub dir: Option<PathBuf>,
    /// JSON output: no progress bars, no running commentary.
    pub json: bool,
    /// The runtime the daemons run on.
    pub runtime: tokio::runtime::Runtime,
    /// Where built data sets are kept, if anywhere.
    pub data_sets: Option<PathBuf>,
    /// `fanout`'s children.
    pub children: usize,
}

impl Ctx {
    /// A line of running commentary on stderr (not with `--json`).
    pub fn say(&self, line: &str) {
        if !self.json {
            eprintln!("  {line}");
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Machine name (`sync_docs_per_s`).
    pub name: String,
    /// What it is, in Chinese then English.
    pub label: String,
    /// The figure.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The floor measured in the same run, in the same unit.
    pub floor: Option<f64>,
    /// The figure against the floor (the scenario says which way).
    pub ratio: Option<f64>,
    /// The target, when the issue set one at this size.
    pub target: Option<String>,
    /// Whether the target was met.
    pub met: Option<bool>,
}

impl Figure {
    /// A figure without floor or target.
    pub fn new(name: &str, label: &str, value: f64, unit: &str) -> Figure {
        Figure {
            name: name.into(),
            label: label.into(),
            value,
            unit: unit.into(),
            floor: None,
            ratio: None,
            target: None,
            met: None,
        }
    }

    /// With the floor of the same run and the ratio to it.
    pub fn floor(mut self, floor: f64, ratio: f64) -> Figure {
        self.floor = Some(floor);
        self.ratio = Some(ratio);
        self
    }

    /// With a target and whether it was met.
    pub fn target(mut self, target: Option<String>, met: Option<bool>) -> Figure {
        self.target = target;
        self.met = met;
        self
    }
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The scenario.
    pub scenario: String,
    /// Documents held (rounds for `hop`).
    pub docs: u64,
    /// Documents changed (`resume`).
    pub changed: Option<u64>,
    /// The figures.
    pub figures: Vec<Figure>,
    /// Wall-clock seconds the scenario took, setup included.
    pub seconds: f64,
}

impl Outcome {
    fn new(scenario: &str, docs: u64, changed: Option<u64>) -> Outcome {
        Outcome {
            scenario: scenario.into(),
            docs,
            changed,
            figures: Vec::new(),
            seconds: 0.0,
        }
    }

    fn with(mut self, figures: Vec<Figure>) -> Outcome {
        self.figures = figures;
        self
    }
}

/// Formats a figure with thousands separators, as the docs' tables do.
fn fmt(value: f64) -> String {
    if value.abs() >= 1_000.0 {
        let whole = value.round() as i64;
        let digits = whole.abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if whole < 0 {
            out.insert(0, '-');
        }
        out
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A count with thousands separators.
fn count(n: u64) -> String {
    if n >= 1_000 {
        fmt(n as f64)
    } else {
        n.to_string()
    }
}

/// The Markdown table of `outcomes`.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| 场景 scenario | N | K | 测量 measure | 数值 figure | 下限 floor (same run) | 比值 ratio | 目标 target | 达到 met |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for outcome in outcomes {
        for f in &outcome.figures {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} {} | {} | {} | {} | {} |\n",
                outcome.scenario,
                count(outcome.docs),
                outcome.changed.map(count).unwrap_or_default(),
                f.label,
                fmt(f.value),
                f.unit,
                f.floor
                    .map(|v| format!("{} {}", fmt(v), f.unit))
                    .unwrap_or_default(),
                f.ratio.map(|r| format!("{r:.2}×")).unwrap_or_default(),
                f.target.clone().unwrap_or_default(),
                match f.met {
                    Some(true) => "✔ yes",
                    Some(false) => "✘ no",
                    None => "",
                },
            ));
        }
    }
    out
}

fn print(outcomes: &[Outcome], json: bool) -> anyhow::Result<()> {
    if json {
        if let [one] = outcomes {
            crate::output::print_json(one)?;
        } else {
            crate::output::print_json(&outcomes)?;
        }
    } else {
        println!("{}", table(outcomes));
    }
    Ok(())
}

/// Runs one scenario, timing it whole.
fn timed(f: impl FnOnce() -> anyhow::Result<Outcome>) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let mut outcome = f()?;
    outcome.seconds = start.elapsed().as_secs_f64();
    Ok(outcome)
}

/// The documented sizes of `tongban bench all` (docs/performance.md).
pub const ALL_INITIAL: [u64; 2] = [5_000, 100_000];
/// `all`: `resume` holds this many.
pub const ALL_RESUME: u64 = 100_000;
/// `all`: `fanout` documents a child.
pub const ALL_FANOUT: u64 = 5_000;
/// `all`: `verify` and `open` hold this many.
pub const ALL_HELD: u64 = 100_000;

/// The most documents a bench builds (a national hub's decade, well past any
/// target): a typo of three zeros more fails at once, not after hours.
pub const MAX_DOCS: u64 = 10_000_000;

/// `tongban bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let usage =
        |field: &str, message: String| Ok(crate::error::Failure::usage(message).at(field).report());
    if let Some(n) = args.docs
        && !(1..=MAX_DOCS).contains(&n)
    {
        return usage(
            "--docs",
            format!("--docs must be 1 to {MAX_DOCS}, found {n}"),
        );
    }
    if let Some(k) = args.changed
        && (k == 0 || k > args.docs.unwrap_or(k))
    {
        return usage(
            "--changed",
            format!("--changed must be at least 1 and at most --docs, found {k}"),
        );
    }
    if args.children == Some(0) || args.children.is_some_and(|c| c > 200) {
        return usage(
            "--children",
            format!(
                "--children must be 1 to 200, found {}",
                args.children.unwrap_or(0)
            ),
        );
    }
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --dir {}", dir.display()))?;
    }
    let data_sets = if args.fresh {
        None
    } else {
        args.data_sets.clone().or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("tongban").join("bench"))
        })
    };
    if let Some(dir) = &data_sets {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data sets' directory {}", dir.display()))?;
    }
    let ctx = Ctx {
        data_sets,
        children: args.children.unwrap_or(world::CHILDREN),
        dir: args.dir.clone(),
        json: args.json,
        runtime: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?,
    };
    let k = args.changed.unwrap_or(100);
    let children = ctx.children;
    let outcomes = match args.scenario {
        BenchScenario::Initial => vec![timed(|| sync::initial(&ctx, args.docs.unwrap_or(5_000)))?],
        BenchScenario::Resume => vec![timed(|| {
            sync::resume(&ctx, args.docs.unwrap_or(100_000), k)
        })?],
        BenchScenario::Fanout => vec![timed(|| {
            sync::fanout(&ctx, args.docs.unwrap_or(ALL_FANOUT), children)
        })?],
        BenchScenario::Verify => {
            vec![timed(|| {
                verify::verify(&ctx, args.docs.unwrap_or(ALL_HELD))
            })?]
        }
        BenchScenario::Open => vec![timed(|| open::open(&ctx, args.docs.unwrap_or(ALL_HELD)))?],
        BenchScenario::Hop => vec![timed(|| sync::hop(&ctx, 20))?],
        BenchScenario::All => all(&ctx, k, children)?,
    };
    print(&outcomes, args.json)?;
    if let Some(out) = &args.out {
        std::fs::write(out, table(&outcomes))
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Every scenario at the documented sizes, and the flatness of `initial`
/// (the cost a document at 100,000 against 5,000).
fn all(ctx: &Ctx, k: u64, children: usize) -> anyhow::Result<Vec<Outcome>> {
    let start = Instant::now();
    let mut outcomes = Vec::new();
    for n in ALL_INITIAL {
        outcomes.push(timed(|| sync::initial(ctx, n))?);
    }
    let per_doc = |o: &Outcome| {
        o.figures
            .iter()
            .find(|f| f.name == "sync_us_per_doc")
            .map(|f| f.value)
    };
    if let (Some(small), Some(big)) = (
        outcomes.first().and_then(per_doc),
        outcomes.get(1).and_then(per_doc),
    ) {
        let ratio = big / small;
        let mut flat = Outcome::new("initial", ALL_INITIAL[1], None);
        flat.figures.push(
            Figure::new(
                "flat_cost_ratio",
                &format!(
                    "每件耗时之比 time a document at {} against {}",
                    count(ALL_INITIAL[1]),
                    count(ALL_INITIAL[0])
                ),
                big,
                "µs",
            )
            .floor(small, ratio)
            .target(Some("≤ 1.2×".into()), Some(ratio <= 1.2)),
        );
        outcomes.push(flat);
    }
    outcomes.push(timed(|| sync::resume(ctx, ALL_RESUME, k))?);
    outcomes.push(timed(|| sync::fanout(ctx, ALL_FANOUT, children))?);
    outcomes.push(timed(|| verify::verify(ctx, ALL_HELD))?);
    outcomes.push(timed(|| open::open(ctx, ALL_HELD))?);
    outcomes.push(timed(|| sync::hop(ctx, 20))?);
    ctx.say(&format!(
        "all: {:.1} min",
        start.elapsed().as_secs_f64() / 60.0
    ));
    Ok(outcomes)
}
