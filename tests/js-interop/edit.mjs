// Edits a saved Tongban case document as a writer outside Tongban would: the
// applicant's phone, written with the type the schema asks for (a string, not
// collaborative text). The change carries no office signature, so every
// Tongban node must refuse the document it ends up in.
import * as A from "@automerge/automerge";
import { readFileSync, writeFileSync } from "fs";

const doc = A.load(new Uint8Array(readFileSync(process.argv[2])));
const edited = A.change(doc, "edited in JavaScript", (d) => {
  d.applicant.phone = new A.ImmutableString("13900000000");
});
writeFileSync(process.argv[3], A.save(edited));
