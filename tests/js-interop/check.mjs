import * as A from "@automerge/automerge";
import { readFileSync } from "fs";
const doc = A.load(new Uint8Array(readFileSync(process.argv[2])));
const t = Object.values(doc.transitions);
console.log(JSON.stringify({
  schema_version: doc.schema_version, case_id: doc.case_id, hukou: doc.applicant.hukou_township,
  kinds: doc.subsidy_kinds, cert_level: doc.certificate.level, n_materials: Object.keys(doc.materials).length,
  notice_items: doc.materials_notice.items.length, reviews: doc.reviews.map(r => r.stage + ":" + r.outcome),
  decision: doc.decision.awards, first: doc.decision.first_paid_month, n_transitions: t.length,
  signed_is_bytes: t[0].signed instanceof Uint8Array, to: t.map(x => x.to).sort()
}));
