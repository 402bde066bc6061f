// The automerge-repo 2.x side of the peers' bench (bench/peers, RESULTS.md).
//
// One Node process is one repo on NodeFS storage, driven by the Rust binary
// through JSON lines: a command on stdin, its answer on stdout (progress lines
// carry "progress"). The hub and the fresh repo are two processes, so each
// has its own event loop, as two machines would; they talk over a WebSocket
// on 127.0.0.1 (automerge-repo has no plain TCP adapter).
//
//   node peer.mjs <dir>     the repo's storage directory
//
// Commands:
//   {"cmd":"import","dir":D,"count":N}   hub: repo.import() D/<i>.automerge, flush
//                                        -> {"ids":[documentId…]}
//   {"cmd":"serve"}                      hub: listen on 127.0.0.1:0 -> {"port":P}
//   {"cmd":"change","ids":[…]}           hub: one change on each -> {"heads":[[…]…]}
//   {"cmd":"load","ids":[…]}             fresh: find each from local storage only
//   {"cmd":"sync","port":P,"ids":[…],"heads":[[…]…],"window":W}
//                                        fresh: connect, find the ids W at a time,
//                                        wait for the heads, flush
//                                        -> {"synced_ms":F,"flushed_ms":F}
//   {"cmd":"exit"}                       shut the repo down and exit
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { WebSocketServer } from "ws";
import * as A from "@automerge/automerge";
import { Repo } from "@automerge/automerge-repo";
import {
  WebSocketClientAdapter,
  WebSocketServerAdapter,
} from "@automerge/automerge-repo-network-websocket";
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node peer.mjs <storage dir>");
  process.exit(2);
}
const repo = new Repo({ storage: new NodeFSStorageAdapter(dir), network: [] });

const reply = (value) => process.stdout.write(JSON.stringify(value) + "\n");
const sameHeads = (a, b) =>
  a.length === b.length && [...a].sort().every((h, i) => h === [...b].sort()[i]);

// Resolves once the handle's document has exactly `heads`.
function untilHeads(handle, heads) {
  if (sameHeads(A.getHeads(handle.doc()), heads)) return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (sameHeads(A.getHeads(handle.doc()), heads)) {
        handle.off("heads-changed", check);
        resolve();
      }
    };
    handle.on("heads-changed", check);
  });
}

// `repo.find`, asked again (up to 5 times) when it answers "unavailable":
// the retries are inside the timed span.
let retries = 0;
async function findRetrying(id) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await repo.find(id);
    } catch (e) {
      if (attempt >= 5 || !String(e).includes("unavailable")) throw e;
      retries += 1;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

const commands = {
  async import({ dir: from, count }) {
    const ids = [];
    for (let i = 0; i < count; i++) {
      const bytes = await readFile(`${from}/${i}.automerge`);
      ids.push(repo.import(new Uint8Array(bytes)).documentId);
      if ((i + 1) % 250 === 0) reply({ progress: i + 1 });
    }
    await repo.flush();
    return { ids };
  },

  async serve() {
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise((resolve) => wss.on("listening", resolve));
    repo.networkSubsystem.addNetworkAdapter(new WebSocketServerAdapter(wss));
    return { port: wss.address().port };
  },

  async change({ ids }) {
    const heads = [];
    for (const id of ids) {
      const handle = await repo.find(id);
      handle.change((doc) => {
        doc.bench_touch = Date.now();
      });
      heads.push(A.getHeads(handle.doc()));
    }
    await repo.flush(ids);
    return { heads };
  },

  async load({ ids }) {
    await Promise.all(ids.map((id) => repo.find(id)));
    return { loaded: ids.length };
  },

  async sync({ port, ids, heads, window }) {
    const start = performance.now();
    // Connected once the hub's peer id is known: finds issued before can be
    // declared unavailable (the adapter says it is ready after 1 s without
    // an answer, which a loaded machine can take), so wait for it, inside
    // the timed span, as samod's side waits for its dialer's handshake.
    const connected = new Promise((resolve) =>
      repo.networkSubsystem.once("peer", resolve),
    );
    repo.networkSubsystem.addNetworkAdapter(
      new WebSocketClientAdapter(`ws://127.0.0.1:${port}`),
    );
    await connected;
    let done = 0;
    let next = 0;
    // `window` finds in flight at once (all of them by default).
    const worker = async () => {
      while (next < ids.length) {
        const i = next++;
        const handle = await findRetrying(ids[i]);
        await untilHeads(handle, heads[i]);
        done += 1;
        if (done % 250 === 0) reply({ progress: done });
      }
    };
    const workers = Math.max(1, Math.min(window ?? ids.length, ids.length));
    await Promise.all(Array.from({ length: workers }, worker));
    const synced = performance.now();
    await repo.flush(ids);
    const flushed = performance.now();
    return { synced_ms: synced - start, flushed_ms: flushed - start, retries };
  },

  async exit() {
    await repo.shutdown();
    reply({ exited: true });
    process.exit(0);
  },
};

const lines = createInterface({ input: process.stdin });
// One command at a time, in order.
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => {
    let command;
    try {
      command = JSON.parse(line);
      const run = commands[command.cmd];
      if (!run) throw new Error(`unknown command ${command.cmd}`);
      reply(await run(command));
    } catch (e) {
      reply({ error: String(e?.stack ?? e) });
    }
  });
});
lines.on("close", () => {
  queue.then(() => process.exit(0));
});
