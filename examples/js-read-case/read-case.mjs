// Reads a Tongban case document — a saved Automerge file — with the JavaScript
// Automerge package and prints its stage and main facts, under the field names
// of docs/case-schema.md.
//
//   npm install
//   node read-case.mjs CASE.automerge          # text for a clerk
//   node read-case.mjs CASE.automerge --json   # the same as JSON
//
// The stage is not stored in the document: it is the `to` of the tip of the
// chain of signed transitions. This reader takes the readable copies (`seq`,
// `to`, `office`, `at`) of each transition and does not check signatures:
// trust comes only from `tongban verify`, which checks the signed bytes.
// Personal data is masked as Tongban masks it (name: family name only; ID
// number: first 6 and last 4 characters).
import * as A from "@automerge/automerge";
import { readFileSync } from "node:fs";

const STAGE_ZH = {
  draft: "受理中",
  accepted: "已受理",
  pushed: "已推送",
  received: "已接收",
  publicized: "公示",
  initial_reviewed: "初审",
  dpf_reviewed: "复审",
  decided: "审定",
  result_received: "结果已反馈",
  notified: "已告知",
  returned: "退回补正",
  rejected: "不予通过",
  withdrawn: "撤回",
  active: "发放中",
  suspended: "暂停",
  terminated: "终止",
};
const SCHEMA_VERSION = 2;

const [file, flag] = process.argv.slice(2);
if (!file || (flag && flag !== "--json")) {
  console.error("usage: node read-case.mjs CASE.automerge [--json]");
  process.exit(2);
}

const doc = A.load(new Uint8Array(readFileSync(file)));
// Automerge 3 hands unsigned integers out as BigInt.
const num = (x) => (typeof x === "bigint" ? Number(x) : x);
const version = num(doc.schema_version);
if (version > SCHEMA_VERSION) {
  console.error(`schema_version ${version} is newer than this reader (${SCHEMA_VERSION})`);
  process.exit(1);
}

const transitions = Object.values(doc.transitions ?? {})
  .map((t) => ({
    seq: num(t.seq),
    from: String(t.from),
    to: String(t.to),
    office: String(t.office),
    at: new Date(num(t.at)).toISOString(),
  }))
  .sort((a, b) => a.seq - b.seq);
const lastSeq = transitions.length ? transitions[transitions.length - 1].seq : null;
const tips = transitions.filter((t) => t.seq === lastSeq);
const stage = tips.length === 1 ? tips[0].to : null;

const name = String(doc.applicant.name);
const id = String(doc.applicant.resident_id);
const out = {
  case_id: String(doc.case_id),
  schema_version: version,
  stage,
  stage_zh: stage ? STAGE_ZH[stage] ?? stage : null,
  forked: tips.length > 1,
  acceptance_office: String(doc.acceptance.office),
  applicant: `${[...name][0] ?? ""}**`,
  resident_id: `${id.slice(0, 6)}********${id.slice(-4)}`,
  hukou_township: String(doc.applicant.hukou_township),
  subsidy_kinds: doc.subsidy_kinds.map(String),
  dibao: Boolean(doc.household.dibao),
  certificate: doc.certificate
    ? { category: String(doc.certificate.category), level: num(doc.certificate.level) }
    : null,
  materials: Object.values(doc.materials ?? {}).map((m) => String(m.kind)).sort(),
  transitions,
};

if (flag === "--json") {
  console.log(JSON.stringify(out, null, 2));
} else {
  console.log(`案件 case ${out.case_id}`);
  console.log(
    `阶段 stage: ${out.stage_zh ?? "分支 forked"} (${out.stage ?? "fork"})，受理地 acceptance ${out.acceptance_office}`,
  );
  console.log(
    `申请人 applicant ${out.applicant} ${out.resident_id}，户籍地 hukou ${out.hukou_township}，` +
      `补贴 kinds ${out.subsidy_kinds.join(",")}，低保 dibao ${out.dibao ? "是 yes" : "否 no"}`,
  );
  console.log(`材料 materials: ${out.materials.join(", ") || "无 none"}`);
  for (const t of out.transitions) {
    console.log(`  #${t.seq} ${t.from || "-"} → ${t.to}（${STAGE_ZH[t.to] ?? t.to}）${t.office} ${t.at}`);
  }
  console.log("注意 note: readable copies only; `tongban verify` checks the signatures");
}
