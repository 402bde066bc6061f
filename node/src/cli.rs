//! Command-line grammar (clap). Parsing only; validation of values that need the
//! domain rules happens in `commands/`, so that a rejected value exits 1 with the
//! rule that failed, and a malformed command line exits 2.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The version `--version` prints: the package's, and the commit it was built
/// from (`build.rs`; `unknown` outside git).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TONGBAN_COMMIT"),
    ")"
);

/// 通办 Tongban: cross-province handling of the two disability subsidies
/// (残疾人两项补贴跨省通办).
#[derive(Debug, Parser)]
#[command(name = "tongban", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// 更多日志 More log output (-v info, -vv debug); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments. `--help` and `--version` print and
    /// exit 0; a malformed command line is a usage error (exit 2), printed as
    /// JSON when `--json` was among the arguments. When the command was given
    /// `--json`, every later error is printed as JSON too
    /// ([`crate::error::set_json`]).
    pub fn parse_or_usage() -> Result<Cli, std::process::ExitCode> {
        use clap::{CommandFactory, FromArgMatches};
        let parsed = Cli::command()
            .try_get_matches()
            .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, wants_json(&matches))));
        match parsed {
            Ok((cli, json)) => {
                crate::error::set_json(json);
                Ok(cli)
            }
            Err(err) if !err.use_stderr() => {
                // --help, --version: what was asked for, exit 0.
                let _ = err.print();
                Err(std::process::ExitCode::SUCCESS)
            }
            Err(err) => {
                let json = std::env::args_os()
                    .skip(1)
                    .take_while(|a| a != "--")
                    .any(|a| a == "--json");
                if json {
                    crate::error::set_json(true);
                    let message = err.render().to_string();
                    Err(crate::error::Failure::usage(message.trim_end()).report())
                } else {
                    let _ = err.print();
                    Err(std::process::ExitCode::from(
                        crate::error::Kind::Usage.exit_status(),
                    ))
                }
            }
        }
    }
}

/// Whether the (sub)command that runs was given `--json`.
fn wants_json(matches: &clap::ArgMatches) -> bool {
    let mut current = matches;
    loop {
        if let Ok(Some(true)) = current.try_get_one::<bool>("json").map(|v| v.copied()) {
            return true;
        }
        match current.subcommand() {
            Some((_, sub)) => current = sub,
            None => return false,
        }
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// 居民身份证号码 Resident ID numbers.
    #[command(subcommand)]
    Id(IdCommand),
    /// 工作日历 The working-day calendar, with adjusted working weekends.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// 演示 Carry a cross-province case through every stage and verify its signed history.
    Demo(DemoArgs),
    /// 性能测试 Measure this machine as a hub: real nodes, QUIC on loopback and redb
    /// in a temporary directory, each figure beside a floor measured in the same run.
    Bench(BenchArgs),
    /// 备份以供查阅 Take a consistent backup of a node's store, or verify one.
    Backup(BackupArgs),
    /// 节点 Set up, run and inspect this office's node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// The directory authority: office certificates and revocations.
    #[command(subcommand)]
    Directory(DirectoryCommand),
    /// 案件办理 Case work at the office window and in review.
    #[command(subcommand)]
    Case(CaseCommand),
    /// 动态核查 Check every award of a county against the latest registry feeds.
    #[command(subcommand)]
    Check(CheckCommand),
    /// 补贴发放 The monthly payroll of a county, at its civil affairs bureau.
    Payroll(PayrollArgs),
    /// 监督报表 Supervision reports from signed timestamps: push and review timeliness,
    /// backlog, disbursement, satisfaction — at a supervisor (or a hub) node.
    Report(ReportArgs),
    /// 数据导出 Export the signed chains and non-personal facts as Apache Parquet,
    /// partitioned by province and month, for DuckDB, Spark or Trino (docs/analytics.md).
    Export(ExportArgs),
    /// 办理控制台 The office console: a local web console for the window and the
    /// reviewers, served over the running node's control API (docs/console.md).
    Console(ConsoleArgs),
    /// 比对数据 Registry feeds (certificates, dibao, deaths) this node holds or its office publishes.
    #[command(subcommand)]
    Feed(FeedCommand),
    /// 补贴政策 The policy that applies to residents of a division (类型及标准由业务属地负责解释).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// 验证 Verify signed histories against the directory.
    Verify(VerifyArgs),
    /// 办理记录 The signed timeline of a case: who, which office, when, deadline, signature.
    History {
        /// 案件编号 The case id.
        case: String,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 恢复 Restore a verified backup into an empty data directory, as a working
    /// node: the backup carries the node's configuration; the office key is
    /// given (`--office-key`) or made anew for the authority to certify
    /// (`--new-key`).
    #[command(group(clap::ArgGroup::new("key").required(true).args(["office_key", "new_key"])))]
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The node's office key file (`office.key`, kept apart from backups).
        #[arg(long)]
        office_key: Option<PathBuf>,
        /// Make a new office key; its public key must then be certified by the
        /// directory authority (`tongban directory rotate`) before the node runs.
        #[arg(long)]
        new_key: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a
    /// directory.
    Manpage {
        /// Write `tongban.1` and a page for every subcommand here instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `tongban backup --out FILE` or `tongban backup verify FILE`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// `verify FILE` checks a backup end to end.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Where to write the backup (written to a temporary file, then renamed).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `tongban backup verify`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// 检查备份 Check every record, checksum, document and material of a backup file.
    Verify {
        /// The backup file.
        file: PathBuf,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `tongban id ...`
#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// 核验身份证号 Check a resident ID number: valid or not, the rule that failed, the masked form.
    Check {
        /// The 18-character number.
        id: String,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where a node keeps its state.
#[derive(Debug, Args, Clone)]
pub struct DataDirArg {
    /// 节点数据目录 The node's data directory (default: $TONGBAN_DATA_DIR).
    #[arg(long, env = "TONGBAN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `tongban calendar ...`
#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// 推算时限 The date N working days after DATE (the deadline rule: counting starts the
    /// first working day after DATE).
    Add {
        /// Start date, YYYY-MM-DD.
        date: String,
        /// Working days.
        n: u32,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 工作日天数 Working days after D1 up to and including D2.
    Between {
        /// From, YYYY-MM-DD (not counted).
        from: String,
        /// To, YYYY-MM-DD (counted).
        to: String,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 导入年度日历 Import a year's schedule (holiday-cn JSON, or Tongban's own text format) into
    /// the node's data directory, without a new build.
    Import {
        /// The schedule file.
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 发布工作日历 Sign the working-day calendar with the directory authority's key, so that
    /// every node counts the same deadlines (carried to every node by sync).
    Publish {
        #[command(flatten)]
        auth: AuthorityDirArg,
        /// The schedule file (holiday-cn JSON, or Tongban's own text format; one or more years).
        file: PathBuf,
        /// 交给节点 Also hand it to this node (running or stopped), from which sync carries it on.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// 日历覆盖年份 Show which years the calendar covers.
    Show {
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// `tongban bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The scenario: `initial` (a hub to a fresh node), `resume` (K changed since
    /// the last sync), `fanout` (one hub serving 20 children at once), `verify`
    /// (`verify --all`), `open` (start time and memory holding N), `hop` (one
    /// transition through the demo's chain of hubs), or `all` (each at the sizes
    /// of docs/performance.md, writing the table).
    #[arg(value_enum)]
    pub scenario: BenchScenario,
    /// Documents the serving hub holds (each scenario has its default).
    #[arg(long)]
    pub docs: Option<u64>,
    /// `resume`: documents changed since the last sync (default 100).
    #[arg(long)]
    pub changed: Option<u64>,
    /// `fanout`: children served at once (default 20).
    #[arg(long)]
    pub children: Option<usize>,
    /// Build the nodes under this directory (kept) instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// `all`: also write the Markdown table to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where built data sets are kept for later runs (default
    /// `$XDG_CACHE_HOME/tongban/bench`, else `~/.cache/tongban/bench`).
    #[arg(long, value_name = "DIR")]
    pub data_sets: Option<PathBuf>,
    /// Build every data set anew and keep none.
    #[arg(long, conflicts_with = "data_sets")]
    pub fresh: bool,
    /// 输出 JSON Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The scenarios of `tongban bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchScenario {
    /// A hub to a fresh node.
    Initial,
    /// K documents changed since the last sync.
    Resume,
    /// One hub serving many children at once.
    Fanout,
    /// `verify --all` over the store.
    Verify,
    /// Start time and resident memory, idle and serving.
    Open,
    /// One transition through the chain of hubs.
    Hop,
    /// Every scenario at its documented sizes.
    All,
}

/// `tongban demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files in this directory instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

/// `tongban node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// 创建节点 Create this office's node: data directory, store and office key (0600).
    /// Prints the public key to send to the directory authority.
    Init {
        /// This office's id, as the directory authority names it.
        #[arg(long)]
        office: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 运行节点 Run this office's node: sync with its hubs over QUIC, accept children,
    /// serve the control API; stops cleanly on Ctrl-C or SIGTERM.
    Run {
        /// The node's config file (tongban.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// 节点状态 Show each peer, when it last synced, and what is waiting to go.
    Status {
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        /// 等待同步完成 Wait until the running node has sent what waits and
        /// fetched every material (an initial sync), with a progress bar on a
        /// terminal; then show the status.
        #[arg(long, conflicts_with = "json")]
        follow: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 导入目录 Import a signed directory published by the authority.
    #[command(name = "directory-import")]
    DirectoryImport {
        /// The directory file (directory.tbdir).
        file: PathBuf,
        /// The authority's public key file (needed for the first import).
        #[arg(long)]
        authority_key: Option<PathBuf>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 导入签名数据 Import a signed dataset file (calendar.tbset, a feed) by hand; a running
    /// node passes it on to its peers.
    DatasetImport {
        /// The signed dataset file.
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// `tongban check ...`
#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// 动态核查 At county civil affairs: compare every active or suspended award of the county
    /// with the latest feeds; sign a suspension (不再符合条件), termination (死亡) or resumption
    /// (数据已更正) with the reason and feed versions.
    Run {
        /// 县级代码 The 6-digit county code.
        #[arg(long)]
        county: String,
        #[command(flatten)]
        operator: OperatorArg,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// `tongban payroll`.
#[derive(Debug, Args)]
pub struct PayrollArgs {
    /// 县级代码 The 6-digit county code.
    #[arg(long)]
    pub county: String,
    /// 发放月份 The month paid, YYYY-MM: every active award once, from the month of
    /// application, with back pay for months not paid before; signed as a record so
    /// that the next month knows. A month already paid shows its record.
    #[arg(long)]
    pub month: String,
    /// 发放明细 Write the lines as CSV for the bank (columns in docs/cli.md).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    #[command(flatten)]
    pub operator: OperatorArg,
    /// 输出 JSON Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `tongban report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// 报表 push (推送及时率), review (审核及时率), backlog (积压), disbursement (发放进度),
    /// satisfaction (满意度).
    pub kind: String,
    /// 地区 The region: a division code prefix — 00 the country, 13 a province,
    /// 1301 a city, 130102 a county, 130102001 a township.
    #[arg(long, default_value = "00")]
    pub region: String,
    /// 月份 The period as one month, YYYY-MM (instead of --from/--to).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub month: Option<String>,
    /// 起始日期 First day of the period, YYYY-MM-DD (default: the first of this month).
    #[arg(long)]
    pub from: Option<String>,
    /// 截止日期 Last day of the period, YYYY-MM-DD (default: today).
    #[arg(long)]
    pub to: Option<String>,
    /// 统计日 The day waiting cases are judged overdue on, YYYY-MM-DD (default: today).
    #[arg(long)]
    pub as_of: Option<String>,
    /// 明细 List the cases behind one row: an office id (push, satisfaction),
    /// ROLE:OFFICE as township:130102001 or county_dpf:130102 (review), a stage
    /// code (backlog), COUNTY:YYYY-MM:KIND (disbursement).
    #[arg(long)]
    pub drill: Option<String>,
    /// Write the report as CSV (English header) to this file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// 输出 JSON Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `tongban export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// 格式 The format: parquet.
    #[arg(long, default_value = "parquet")]
    pub format: String,
    /// 输出目录 The directory to write (new, empty, or an earlier export, which
    /// is replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// 地区 The region: a division code prefix, 00 for the country.
    #[arg(long, default_value = "00")]
    pub region: String,
    /// 输出 JSON Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `tongban feed ...`
#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// 发布比对数据 Sign this office's registry export (CSV) and send it to the offices of the
    /// county: certificates by the county DPF, dibao and deaths by county civil affairs.
    Publish {
        /// 数据类型 certificates (残疾人证), dibao (低保), deaths (死亡登记).
        #[arg(long)]
        kind: String,
        /// The CSV file (columns in docs/cli.md).
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 导出签名数据 Write a signed dataset this node holds to a file, to carry it to an offline
    /// node (`tongban node dataset-import`).
    Export {
        /// 数据类型 calendar, policy, certificates, dibao, deaths or payroll.
        #[arg(long)]
        kind: String,
        /// 范围 The county code (default: this office's county; `00` for the
        /// calendar; the province, `13`, for a policy; county and month,
        /// `130102:2026-11`, for a payroll record).
        #[arg(long)]
        scope: Option<String>,
        /// Where to write it.
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 查看比对数据 The signed datasets (calendar, feeds, payroll records) this node holds,
    /// with their versions.
    Show {
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// Where the directory authority keeps its files.
#[derive(Debug, Args, Clone)]
pub struct AuthorityDirArg {
    /// The authority folder (authority.key, authority.pub, directory.tbdir).
    #[arg(long, env = "TONGBAN_AUTHORITY_DIR")]
    pub authority: PathBuf,
}

/// `tongban directory ...`
#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Create the authority key and an empty directory.
    Init {
        #[command(flatten)]
        auth: AuthorityDirArg,
    },
    /// Certify an office's public key.
    Add {
        #[command(flatten)]
        auth: AuthorityDirArg,
        /// Office id.
        #[arg(long)]
        office: String,
        /// Office name in Chinese.
        #[arg(long)]
        name: String,
        /// Role: township, county_dpf, county_civil_affairs, hub, supervisor.
        #[arg(long)]
        role: String,
        /// Division code (2, 6 or 9 digits; 00 for the national hub or the national supervisor).
        #[arg(long)]
        division: String,
        /// The office's public key (hex, as `tongban node init` printed it).
        #[arg(long)]
        public_key: String,
        /// Years of validity from today (at least 1).
        #[arg(long, default_value_t = 5)]
        valid_years: u32,
    },
    /// Revoke an office's keys from now (or --effective) on.
    Revoke {
        #[command(flatten)]
        auth: AuthorityDirArg,
        /// Office id.
        #[arg(long)]
        office: String,
        /// Only this key (hex); default every key of the office.
        #[arg(long)]
        public_key: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        /// Effective time, RFC 3339 (default now).
        #[arg(long)]
        effective: Option<String>,
    },
    /// Replace an office's key: revoke its current keys from now and certify a new one.
    Rotate {
        #[command(flatten)]
        auth: AuthorityDirArg,
        /// Office id.
        #[arg(long)]
        office: String,
        /// The new public key (hex).
        #[arg(long)]
        public_key: String,
        /// Years of validity from today (at least 1).
        #[arg(long, default_value_t = 5)]
        valid_years: u32,
    },
    /// Show a directory: the authority's, or a directory file.
    Show {
        /// The authority folder.
        #[arg(long, env = "TONGBAN_AUTHORITY_DIR", conflicts_with = "file")]
        authority: Option<PathBuf>,
        /// A directory file, checked against --authority-key.
        #[arg(long, requires = "authority_key")]
        file: Option<PathBuf>,
        /// The authority's public key file.
        #[arg(long)]
        authority_key: Option<PathBuf>,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The operator performing a stage command.
#[derive(Debug, Args, Clone)]
pub struct OperatorArg {
    /// 经办人 The clerk performing the step (default: `operator` in node.toml).
    #[arg(long)]
    pub operator: Option<String>,
}

/// `tongban case ...`
#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// 受理登记 Start a case (intake) from flags or a JSON file; prints the materials notice.
    New(Box<NewCaseArgs>),
    /// 上传材料 Attach a material (an electronic copy) to a case.
    Attach {
        /// 案件编号 The case id.
        case: String,
        /// The file.
        file: PathBuf,
        /// The checklist code (id_card, hukou_book, disability_certificate, ...).
        #[arg(long)]
        kind: String,
        /// Media type (default from the file name): image/jpeg, image/png,
        /// image/tiff, image/bmp, image/webp, application/pdf or application/ofd.
        #[arg(long)]
        media_type: Option<String>,
        #[command(flatten)]
        operator: OperatorArg,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 受理 Materials complete: accept the case (已受理 accepted).
    Accept(StageArgs),
    /// 推送 Push the case to the domicile township (已推送 pushed).
    Push(StageArgs),
    /// 公示 Start the village notice of a local application (publicized).
    Publicize(StageArgs),
    /// 初审／复审 Review at the domicile township (初审) or the county DPF (复审).
    Review(ReviewArgs),
    /// 审定 Decide at county civil affairs (decided, or rejected). An award the
    /// person holds, or applied for first, in another case is refused (exit 3).
    Decide(DecideArgs),
    /// 告知 Record how the applicant was told (已告知 notified).
    Notify {
        #[command(flatten)]
        stage: StageArgs,
        /// phone, sms, in-person or letter.
        #[arg(long)]
        method: String,
    },
    /// 发放 Start, suspend, resume or end payment (发放中 active / 暂停 / 终止).
    Award {
        #[command(flatten)]
        stage: StageArgs,
        /// activate, suspend, resume or terminate.
        #[arg(long)]
        action: String,
        /// Why (required to suspend, terminate or resume; a resumption,
        /// also from terminated, is a correction and its stopped months are
        /// paid back by the next payroll).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// 服务评价 Record the applicant's satisfaction, 1-5.
    Evaluate {
        /// 案件编号 The case id.
        case: String,
        /// Score 1-5.
        #[arg(long)]
        score: u8,
        /// Comment.
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        operator: OperatorArg,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 撤回 Withdraw the application before a decision (withdrawn).
    Withdraw {
        #[command(flatten)]
        stage: StageArgs,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// 案件列表 List cases held here (重复: flagged a duplicate).
    List {
        /// Only this stage (code name).
        #[arg(long)]
        stage: Option<String>,
        /// Only cases on this office's route (its id).
        #[arg(long)]
        office: Option<String>,
        /// Only cases past their deadline.
        #[arg(long)]
        overdue: bool,
        /// Only cases due within N working days.
        #[arg(long)]
        due_within: Option<u32>,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 导出档案 Write a self-contained signed archive of one case (备份以供查阅): document,
    /// signed transitions, directory and optionally materials.
    Export {
        /// 案件编号 The case id.
        case: String,
        /// The archive file to write (TBARC v1).
        #[arg(long)]
        out: PathBuf,
        /// Include the case's materials (every one the document records).
        #[arg(long)]
        with_materials: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 案件材料 The scanned materials of a case, for its reviewers: list them, or
    /// write one to a file.
    #[command(subcommand)]
    Material(MaterialCommand),
    /// 案件详情 Show one case, with the person's other cases claiming the same subsidy.
    Show {
        /// 案件编号 The case id.
        case: String,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// `tongban case material ...`
#[derive(Debug, Subcommand)]
pub enum MaterialCommand {
    /// 材料清单 List the materials a case records: kind, size, hash, and whether
    /// this node holds them yet.
    List {
        /// 案件编号 The case id.
        case: String,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 取出材料 Write a material (an electronic copy) of a case to a file, checked
    /// against its hash first. Only an office of the case is given it (hubs
    /// only relay materials).
    Get {
        /// 案件编号 The case id.
        case: String,
        /// 材料类别或哈希 The material: its checklist code (hukou_book, id_card, ...)
        /// when the case records one of that kind, else its hash (64 hex digits,
        /// or a unique prefix of at least 8; see `case material list`).
        #[arg(value_name = "KIND|HASH")]
        material: String,
        /// 输出文件 The file to write (mode 0600, through a temporary file); `-`
        /// writes to standard output. An existing file is kept unless --force.
        #[arg(long)]
        out: PathBuf,
        /// 覆盖 Replace an existing --out file.
        #[arg(long)]
        force: bool,
        /// 输出 JSON Print JSON (what was written; not with `--out -`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// Arguments every stage command takes.
#[derive(Debug, Args, Clone)]
pub struct StageArgs {
    /// 案件编号 The case id.
    pub case: String,
    #[command(flatten)]
    pub operator: OperatorArg,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `tongban case new`.
#[derive(Debug, Args)]
pub struct NewCaseArgs {
    /// Read the intake form from a JSON file (fields as in docs/cli.md).
    #[arg(long, conflicts_with_all = ["name", "id", "hukou"])]
    pub from_json: Option<PathBuf>,
    /// Applicant's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Resident ID number.
    #[arg(long)]
    pub id: Option<String>,
    /// 9-digit township code of the household register.
    #[arg(long)]
    pub hukou: Option<String>,
    /// Disability certificate number.
    #[arg(long)]
    pub certificate: Option<String>,
    /// In a dibao household.
    #[arg(long)]
    pub dibao: bool,
    /// In a low-income household.
    #[arg(long)]
    pub low_income: bool,
    /// Needs long-term care.
    #[arg(long)]
    pub long_term_care: bool,
    /// A similar allowance already received (repeatable).
    #[arg(long = "allowance")]
    pub allowances: Vec<String>,
    /// Subsidy kind: living or nursing (repeatable).
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Contact telephone.
    #[arg(long, default_value = "")]
    pub phone: String,
    /// Current address.
    #[arg(long, default_value = "")]
    pub address: String,
    /// Guardian or agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// 输出 JSON Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub operator: OperatorArg,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `tongban case review`.
#[derive(Debug, Args)]
#[group(id = "verdict", required = true, multiple = false, args = ["approve", "return_", "reject"])]
pub struct ReviewArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Approve and submit to the next level.
    #[arg(long)]
    pub approve: bool,
    /// Return to the acceptance office for correction (退回补正).
    #[arg(long = "return")]
    pub return_: bool,
    /// Reject (不予通过).
    #[arg(long)]
    pub reject: bool,
    /// The opinion.
    #[arg(long)]
    pub opinion: String,
}

/// `tongban case decide`.
#[derive(Debug, Args)]
pub struct DecideArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Reject instead of approving (reasons in --opinion).
    #[arg(long)]
    pub reject: bool,
    /// Override a policy amount: KIND=YUAN (needs --override-reason).
    #[arg(long = "amount")]
    pub amounts: Vec<String>,
    /// Why an amount differs from the policy, or why a kind the applicant is not
    /// eligible for under the domicile policy is awarded anyway (signed with the
    /// decision; shown by `history` and `case show`; `verify` fails an
    /// ineligible award without it).
    #[arg(long)]
    pub override_reason: Option<String>,
    /// Only these kinds are awarded (default every kind applied for).
    #[arg(long = "award")]
    pub awards: Vec<String>,
    /// The opinion.
    #[arg(long, default_value = "")]
    pub opinion: String,
}

/// `tongban policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// 查看政策 The subsidy kinds, eligibility, materials and amounts for residents of DIVISION
    /// (with a data directory: the policy that node applies, published or shipped).
    Show {
        /// A division code (province, county or township).
        division: String,
        /// 输出 JSON Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 发布政策 Sign a province's policy (TOML, the format of the shipped files, in
    /// docs/cli.md) with the directory authority's key: carried by sync to every node,
    /// it replaces the policy every office applies to that province's residents.
    Publish {
        #[command(flatten)]
        auth: AuthorityDirArg,
        /// The policy file (`province = "13"` names the province; `00` the national default).
        file: PathBuf,
        /// 交给节点 Also hand it to this node (running or stopped), from which sync carries it on.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// `tongban verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// 案件编号 The case id.
    #[arg(required_unless_present_any = ["all", "archive"], conflicts_with_all = ["all", "archive"])]
    pub case: Option<String>,
    /// Every case held here.
    #[arg(long, conflicts_with = "archive")]
    pub all: bool,
    /// A case archive (`tongban case export`), verified without a data directory.
    #[arg(long, requires = "authority_key")]
    pub archive: Option<PathBuf>,
    /// The directory authority's public key file (authority.pub), for --archive.
    #[arg(long, requires = "archive")]
    pub authority_key: Option<PathBuf>,
    /// 输出 JSON Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `tongban console [--listen ADDR] [--config FILE]` or `tongban console user add NAME`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConsoleArgs {
    /// `user add NAME` makes a local operator account.
    #[command(subcommand)]
    pub command: Option<ConsoleCommand>,
    /// 监听地址 Where to listen (default 127.0.0.1:8088, or `[console] listen` of
    /// the configuration). A non-loopback address only when the configuration
    /// names it.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// 节点配置 The node's tongban.toml, whose `[console] listen` may open the
    /// console to the office LAN.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `tongban console user ...`
#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// 控制台账户 The console's local operator accounts.
    #[command(subcommand)]
    User(ConsoleUserCommand),
}

/// `tongban console user add NAME`
#[derive(Debug, Subcommand)]
pub enum ConsoleUserCommand {
    /// 新建账户 Make an account; the password is read from standard input (one
    /// line; not echoed on a terminal). The name is the operator every action
    /// of the account is signed with.
    Add {
        /// 账户名（经办人） The account and operator name, e.g. 窗口01.
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// 列出账户 List the accounts' names.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
}
