// Reads a saved Tongban case document and prints what it finds as JSON.
// Automerge 3.x hands uints and large ints out as BigInt, which JSON.stringify
// refuses: they are turned into numbers first.
import * as A from "@automerge/automerge";
import { readFileSync } from "fs";

const doc = A.load(new Uint8Array(readFileSync(process.argv[2])));
const num = (x) => (typeof x === "bigint" ? Number(x) : x);
const t = Object.values(doc.transitions);
const seals = Object.values(doc.seals ?? {});
console.log(
  JSON.stringify({
    schema_version: num(doc.schema_version),
    case_id: String(doc.case_id),
    hukou: String(doc.applicant.hukou_township),
    kinds: doc.subsidy_kinds.map(String),
    cert_level: num(doc.certificate.level),
    n_materials: Object.keys(doc.materials).length,
    notice_items: doc.materials_notice.items.length,
    reviews: doc.reviews.map((r) => `${r.stage}:${r.outcome}`),
    first: doc.decision ? String(doc.decision.first_paid_month) : null,
    n_transitions: t.length,
    n_seals: seals.length,
    signed_is_bytes: t[0].signed instanceof Uint8Array,
    seq_is_uint: typeof t[0].seq === "bigint" || Number.isInteger(t[0].seq),
    to: t.map((x) => String(x.to)).sort(),
  }),
);
