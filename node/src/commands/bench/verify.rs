//! The `verify` scenario: `verify --all` over a store of N finished cases —
//! the same library call the command makes on a stopped node — against its
//! floor, loading the same documents and checking every signed record they
//! hold in batches.

use std::time::Instant;

use anyhow::bail;
use tongban_domain::ids::Timestamp;
use tongban_node::local::LocalNode;
use tongban_node::office::Office;

use super::world::{SERVER, World};
use super::{Ctx, Figure, Outcome};

/// `verify`: N cases at the hub, verified whole.
pub fn verify(ctx: &Ctx, n: u64) -> anyhow::Result<Outcome> {
    let world = World::filled(ctx, &format!("verify-{n}"), n)?;
    let node = LocalNode::open(&world.dir(SERVER))?;
    let cases = node.case_ids()?;
    if cases.len() as u64 != n {
        bail!("the hub holds {} cases, not {n}", cases.len());
    }
    ctx.say(&format!("verify {n}: floor (load + batch signatures)…"));
    let bar = crate::output::bar(n, "下限 floor", ctx.json);
    let start = Instant::now();
    let records = tongban_node::verify::floor(&node, &cases, &|k| bar.inc(k))?;
    let floor = start.elapsed();
    bar.finish_and_clear();
    ctx.say(&format!("verify {n}: verify --all…"));
    let bar = crate::output::bar(n, "验证 verifying", ctx.json);
    let start = Instant::now();
    let found = node.verify_all(&cases, Timestamp::now(), &|k| bar.inc(k))?;
    let took = start.elapsed();
    bar.finish_and_clear();
    if !found.failed.is_empty() {
        bail!(
            "{} of the fixture's cases failed verification (first: {} violations)",
            found.failed.len(),
            found.failed[0].violations.len()
        );
    }
    let ratio = took.as_secs_f64() / floor.as_secs_f64();
    let big = n >= 1_000_000;
    Ok(Outcome::new("verify", n, None).with(vec![
        Figure::new("verify_s", "全部验证 verify --all", took.as_secs_f64(), "s")
            .floor(floor.as_secs_f64(), ratio)
            .target(
                big.then(|| "≤ 1.3× the floor".to_string()),
                big.then_some(ratio <= 1.3),
            ),
        Figure::new(
            "verify_docs_per_s",
            "每秒验证件数 cases a second",
            n as f64 / took.as_secs_f64(),
            "docs/s",
        ),
        Figure::new(
            "signed_records",
            "签名记录 signed records checked by the floor",
            records as f64,
            "",
        ),
    ]))
}
