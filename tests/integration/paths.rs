//! One case per path, end to end over real nodes on loopback QUIC — approved;
//! returned for correction, then approved; rejected at each level; withdrawn —
//! each signed at the office the stage machine names, with the receipts signed by
//! the receiving nodes, and the signed history of each checked on every node.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use tongban_case::{IntakeForm, Outcome, Payload};
use tongban_domain::ids::{CaseId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::{Role, Stage};
use tongban_node::daemon::{Clock, Daemon, NodeConfig, StartOptions};
use tongban_node::provision::{OfficeSpec, provision};
use tongban_store::MaterialHash;

pub(crate) const ACCEPTANCE: &str = "440106001";
pub(crate) const DOMICILE: &str = "130102001";
pub(crate) const DPF: &str = "130102-dpf";
pub(crate) const CIVIL: &str = "130102-ca";
pub(crate) const OFFICES: [(&str, Role, &str); 5] = [
    ("hub-cn", Role::Hub, "00"),
    (ACCEPTANCE, Role::Township, "440106001"),
    (DOMICILE, Role::Township, "130102001"),
    (DPF, Role::CountyDpf, "130102"),
    (CIVIL, Role::CountyCivilAffairs, "130102"),
];

pub(crate) struct Net {
    _tmp: tempfile::TempDir,
    pub(crate) nodes: BTreeMap<&'static str, Daemon>,
    next_resident: usize,
}

pub(crate) fn opinion(outcome: Outcome, text: &str) -> Payload {
    Payload {
        opinion: text.into(),
        outcome: Some(outcome),
        ..Payload::default()
    }
}

impl Net {
    pub(crate) async fn start() -> Net {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let from = Timestamp(Timestamp::now().0 - 86_400_000);
        let to = Timestamp(Timestamp::now().0 + 365 * 86_400_000);
        let specs: Vec<OfficeSpec> = OFFICES
            .iter()
            .map(|(id, role, division)| OfficeSpec::new(id, *role, division))
            .collect();
        provision(root, &specs, from, to).unwrap();
        let options = StartOptions {
            clock: Clock::System,
            control_api: false,
            min_backoff: Duration::from_millis(50),
            ..StartOptions::default()
        };
        let mut nodes = BTreeMap::new();
        let mut hub_addr = None;
        for (id, ..) in OFFICES {
            let config =
                NodeConfig::loopback(&root.join(id), hub_addr.map(|address| ("hub-cn", address)));
            let daemon = Daemon::start(&config, options.clone()).await.unwrap();
            hub_addr.get_or_insert(daemon.listen_addr());
            nodes.insert(id, daemon);
        }
        Net {
            _tmp: tmp,
            nodes,
            next_resident: 0,
        }
    }

    /// A new cross-province case at the acceptance office, materials attached.
    pub(crate) async fn new_case(&mut self) -> CaseId {
        self.next_resident += 1;
        let first17 = format!("1301021968051{:04}", self.next_resident);
        let id = format!("{first17}{}", resident_id_check_char(&first17).unwrap());
        let form = IntakeForm {
            name: "赵六".into(),
            resident_id: id.clone(),
            hukou_township: DOMICILE.into(),
            certificate: format!("{id}62"),
            dibao: true,
            subsidy_kinds: vec!["living".into()],
            ..IntakeForm::default()
        };
        self.nodes[ACCEPTANCE]
            .handle()
            .exec(move |node, now| {
                let op = Operator::parse("窗口01").unwrap();
                let made = node.new_case(&form, &op, now).unwrap();
                for (code, _) in &made.notice {
                    let scan = format!("scan {code}");
                    node.attach_reader(
                        &made.case_id,
                        scan.as_bytes(),
                        "s.jpg",
                        code,
                        "image/jpeg",
                        &op,
                        now,
                    )
                    .unwrap();
                }
                made.case_id
            })
            .await
            .unwrap()
    }

    pub(crate) async fn act(&self, office: &str, case: &CaseId, to: Stage, payload: Payload) {
        let case = case.clone();
        self.nodes[office]
            .handle()
            .exec(move |node, now| {
                let op = Operator::parse("经办01").unwrap();
                node.act(&case, to, &payload, &op, now)
            })
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{office} cannot sign {}: {e}", to.code()));
    }

    pub(crate) async fn stage(&self, office: &str, case: &CaseId) -> Option<Stage> {
        let case = case.clone();
        self.nodes[office]
            .handle()
            .exec(move |node, _| node.case(&case).ok().and_then(|d| d.stage().ok().flatten()))
            .await
            .unwrap()
    }

    /// The Automerge heads of `office`'s copy of `case` (empty when it holds none).
    pub(crate) async fn history_of(&self, office: &str, case: &CaseId) -> Vec<[u8; 32]> {
        let case = case.clone();
        self.nodes[office]
            .handle()
            .exec(move |node, _| node.case(&case).map(|mut d| d.heads()).unwrap_or_default())
            .await
            .unwrap()
    }

    /// Waits until `office` holds `case` with the latest transition at `stage`.
    pub(crate) async fn wait(&self, office: &str, case: &CaseId, stage: Stage) {
        let start = Instant::now();
        loop {
            let held = self.stage(office, case).await;
            if held == Some(stage) {
                return;
            }
            if start.elapsed() >= Duration::from_secs(30) {
                let mut everywhere = Vec::new();
                for (id, ..) in OFFICES {
                    everywhere.push(format!("{id}: {:?}", self.stage(id, case).await));
                }
                let refusals: Vec<String> = {
                    let mut all = Vec::new();
                    for (id, daemon) in &self.nodes {
                        for r in daemon.handle().status().await.unwrap().refusals {
                            all.push(format!("{id} refused from {}: {}", r.peer, r.reason));
                        }
                    }
                    all
                };
                panic!(
                    "{office} holds {case} at {held:?}, not {} (everywhere: {everywhere:?}; refusals: {refusals:?})",
                    stage.code()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The stages of the signed history on every node on the route, which must
    /// agree, verify clean and equal `expected`.
    pub(crate) async fn history(&self, case: &CaseId, expected: &[Stage]) {
        let mut seen = None;
        for (id, daemon) in &self.nodes {
            let case = case.clone();
            let (stages, ok, violations) = daemon
                .handle()
                .exec(move |node, now| {
                    let mut doc = node.case(&case).unwrap();
                    let report = doc
                        .verify(node.directory().unwrap(), node.calendar(), now)
                        .unwrap();
                    let stages: Vec<Stage> = doc
                        .chain()
                        .unwrap()
                        .links
                        .iter()
                        .map(|l| l.signed.transition.to)
                        .collect();
                    let violations: Vec<String> =
                        report.violations.iter().map(ToString::to_string).collect();
                    (stages, report.is_ok(), violations)
                })
                .await
                .unwrap();
            assert!(ok, "{id}: {violations:?}");
            assert_eq!(stages, expected, "{id}");
            if let Some(seen) = &seen {
                assert_eq!(&stages, seen, "{id} disagrees");
            }
            seen = Some(stages);
        }
    }

    /// The materials `office`'s copy of the case lists, by hash, with the bytes
    /// `office` holds of each (checked as read).
    async fn materials(&self, office: &str, case: &CaseId) -> BTreeMap<String, Option<Vec<u8>>> {
        let case = case.clone();
        self.nodes[office]
            .handle()
            .exec(move |node, _| {
                let doc = node.case(&case).unwrap().read().unwrap();
                doc.materials
                    .values()
                    .map(|m| {
                        let hash: MaterialHash = m.hash.parse().unwrap();
                        let bytes = node.store().open_material(&hash).ok().map(|mut r| {
                            let mut out = Vec::new();
                            r.read_to_end(&mut out).unwrap();
                            out
                        });
                        (m.hash.clone(), bytes)
                    })
                    .collect()
            })
            .await
            .unwrap()
    }

    /// Waits until every node holds the scans the acceptance office attached to
    /// `case`, byte for byte (fetched over QUIC, through the hub).
    async fn materials_everywhere(&self, case: &CaseId) {
        let attached = self.materials(ACCEPTANCE, case).await;
        assert!(!attached.is_empty());
        assert!(attached.values().all(Option::is_some));
        for (id, ..) in OFFICES {
            let start = Instant::now();
            loop {
                let held = self.materials(id, case).await;
                if held == attached {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "{id} holds {} of {} materials of {case}",
                    held.values().filter(|b| b.is_some()).count(),
                    attached.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    pub(crate) async fn push(&mut self) -> CaseId {
        let case = self.new_case().await;
        self.act(ACCEPTANCE, &case, Stage::Accepted, Payload::default())
            .await;
        self.act(ACCEPTANCE, &case, Stage::Pushed, Payload::default())
            .await;
        self.wait(ACCEPTANCE, &case, Stage::Received).await;
        case
    }

    pub(crate) async fn finish_approved(&self, case: &CaseId) {
        self.act(
            DOMICILE,
            case,
            Stage::InitialReviewed,
            opinion(Outcome::Approve, "属实，同意上报"),
        )
        .await;
        self.wait(DPF, case, Stage::InitialReviewed).await;
        self.act(
            DPF,
            case,
            Stage::DpfReviewed,
            opinion(Outcome::Approve, "证件有效"),
        )
        .await;
        self.wait(CIVIL, case, Stage::DpfReviewed).await;
        let decision = self.nodes[CIVIL]
            .handle()
            .exec({
                let case = case.clone();
                move |node, now| {
                    let doc = node.case(&case).unwrap().read().unwrap();
                    let (awards, first) =
                        tongban_case::document::policy_awards(&doc, now.china_date()).unwrap();
                    Payload {
                        opinion: "审定通过".into(),
                        outcome: Some(Outcome::Approve),
                        awards,
                        first_paid_month: Some(first),
                        method: None,
                        override_reason: None,
                    }
                }
            })
            .await
            .unwrap();
        self.act(CIVIL, case, Stage::Decided, decision).await;
        self.wait(ACCEPTANCE, case, Stage::ResultReceived).await;
        self.act(
            ACCEPTANCE,
            case,
            Stage::Notified,
            Payload {
                method: Some("sms".into()),
                opinion: "短信告知".into(),
                ..Payload::default()
            },
        )
        .await;
        self.wait(CIVIL, case, Stage::Notified).await;
        self.act(CIVIL, case, Stage::Active, Payload::default())
            .await;
        for (id, ..) in OFFICES {
            self.wait(id, case, Stage::Active).await;
        }
    }

    async fn notify_rejection(&self, case: &CaseId) {
        self.wait(ACCEPTANCE, case, Stage::ResultReceived).await;
        self.act(
            ACCEPTANCE,
            case,
            Stage::Notified,
            Payload {
                method: Some("in_person".into()),
                opinion: "当面告知不予批准理由".into(),
                ..Payload::default()
            },
        )
        .await;
        for (id, ..) in OFFICES {
            self.wait(id, case, Stage::Notified).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_over_real_nodes() {
    use Stage::*;
    let mut net = Net::start().await;
    let head = [Draft, Accepted, Pushed, Received];

    // Approved.
    let approved = net.push().await;
    net.finish_approved(&approved).await;
    let mut want = head.to_vec();
    want.extend([
        InitialReviewed,
        DpfReviewed,
        Decided,
        ResultReceived,
        Notified,
        Active,
    ]);
    net.history(&approved, &want).await;
    // The scans went along: the hub, the domicile township and both county
    // offices hold the acceptance office's bytes.
    net.materials_everywhere(&approved).await;

    // Returned for correction by the domicile township, corrected, approved.
    let returned = net.push().await;
    net.act(
        DOMICILE,
        &returned,
        Returned,
        opinion(Outcome::Return, "低保证明复印件不清晰，请补正"),
    )
    .await;
    net.wait(ACCEPTANCE, &returned, Returned).await;
    net.act(ACCEPTANCE, &returned, Accepted, Payload::default())
        .await;
    net.act(ACCEPTANCE, &returned, Pushed, Payload::default())
        .await;
    net.wait(ACCEPTANCE, &returned, Received).await;
    net.finish_approved(&returned).await;
    let mut want = head.to_vec();
    want.extend([Returned, Accepted, Pushed, Received]);
    want.extend([
        InitialReviewed,
        DpfReviewed,
        Decided,
        ResultReceived,
        Notified,
        Active,
    ]);
    net.history(&returned, &want).await;

    // Rejected at the domicile township.
    let at_township = net.push().await;
    net.act(
        DOMICILE,
        &at_township,
        Rejected,
        opinion(Outcome::Reject, "户籍不在本辖区"),
    )
    .await;
    net.notify_rejection(&at_township).await;
    let mut want = head.to_vec();
    want.extend([Rejected, ResultReceived, Notified]);
    net.history(&at_township, &want).await;

    // Rejected at the county DPF.
    let at_dpf = net.push().await;
    net.act(
        DOMICILE,
        &at_dpf,
        InitialReviewed,
        opinion(Outcome::Approve, "同意上报"),
    )
    .await;
    net.wait(DPF, &at_dpf, InitialReviewed).await;
    net.act(
        DPF,
        &at_dpf,
        Rejected,
        opinion(Outcome::Reject, "残疾人证已注销"),
    )
    .await;
    net.notify_rejection(&at_dpf).await;
    let mut want = head.to_vec();
    want.extend([InitialReviewed, Rejected, ResultReceived, Notified]);
    net.history(&at_dpf, &want).await;

    // Rejected at county civil affairs.
    let at_civil = net.push().await;
    net.act(
        DOMICILE,
        &at_civil,
        InitialReviewed,
        opinion(Outcome::Approve, "同意上报"),
    )
    .await;
    net.wait(DPF, &at_civil, InitialReviewed).await;
    net.act(
        DPF,
        &at_civil,
        DpfReviewed,
        opinion(Outcome::Approve, "证件有效"),
    )
    .await;
    net.wait(CIVIL, &at_civil, DpfReviewed).await;
    net.act(
        CIVIL,
        &at_civil,
        Rejected,
        opinion(Outcome::Reject, "已享受同类补贴"),
    )
    .await;
    net.notify_rejection(&at_civil).await;
    let mut want = head.to_vec();
    want.extend([
        InitialReviewed,
        DpfReviewed,
        Rejected,
        ResultReceived,
        Notified,
    ]);
    net.history(&at_civil, &want).await;

    // Withdrawn by the applicant after the push.
    let withdrawn = net.push().await;
    net.act(
        ACCEPTANCE,
        &withdrawn,
        Withdrawn,
        Payload {
            opinion: "申请人撤回申请".into(),
            ..Payload::default()
        },
    )
    .await;
    for (id, ..) in OFFICES {
        net.wait(id, &withdrawn, Withdrawn).await;
    }
    let mut want = head.to_vec();
    want.push(Withdrawn);
    net.history(&withdrawn, &want).await;

    // A step signed at the wrong office is refused, naming the right one.
    let case = approved.clone();
    let err = net.nodes[DOMICILE]
        .handle()
        .exec(move |node, now| {
            let op = Operator::parse("经办01").unwrap();
            node.act(&case, Stage::Suspended, &Payload::default(), &op, now)
        })
        .await
        .unwrap()
        .unwrap_err();
    assert!(!err.to_string().is_empty());

    for (_, daemon) in std::mem::take(&mut net.nodes) {
        daemon.shutdown().await.unwrap();
    }
}
