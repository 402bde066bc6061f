//! samod (the Rust automerge-repo): a hub repo and a fresh repo, each on
//! its own `TokioFilesystemStorage`, in this process on one tokio runtime,
//! connected over TCP on 127.0.0.1 with samod's own length-delimited
//! `TcpDialer` / `AcceptorHandle::accept_tokio_io`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use automerge::{Automerge, ChangeHash, ROOT, transaction::Transactable as _};
use futures::{StreamExt as _, stream::FuturesUnordered};
use indicatif::ProgressBar;
use samod::storage::TokioFilesystemStorage;
use samod::{BackoffConfig, DocHandle, DocumentId, Repo};
use tokio::net::TcpListener;

use crate::fixture::{Doc, changed_indices};

/// What one size measured: initial, then resume on the same repos.
pub struct SamodRun {
    /// Initial: until the fresh repo's handles all had the hub's heads.
    pub initial_synced: Duration,
    /// Initial: until the fresh repo was stopped, which waits for its
    /// storage writes (its documents are on disk).
    pub initial_durable: Duration,
    /// Resume: until the changed documents had the hub's new heads.
    pub resume_synced: Duration,
    /// Resume: until the fresh repo was stopped (writes on disk).
    pub resume_durable: Duration,
}

async fn open(dir: &Path) -> Repo {
    Repo::build_tokio()
        .with_storage(TokioFilesystemStorage::new(dir))
        .load()
        .await
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// Waits until `handle`'s document has exactly `heads` (sorted).
async fn until_heads(handle: &DocHandle, heads: &[ChangeHash]) {
    loop {
        // Subscribe before looking, so a change in between is not missed.
        let mut changes = handle.changes();
        if sorted(handle.with_document(|d| d.get_heads())) == heads {
            return;
        }
        if changes.next().await.is_none() {
            return;
        }
    }
}

/// Dials the hub and finds `ids`, `window` at a time, each until it has
/// `heads`.
async fn sync_all(
    fresh: &Repo,
    url: &url::Url,
    ids: &[DocumentId],
    heads: &[Vec<ChangeHash>],
    window: usize,
    bar: &ProgressBar,
) -> Result<Vec<DocHandle>> {
    let dialer = fresh
        .dial_tcp(url.clone(), BackoffConfig::default())
        .map_err(|e| anyhow!("dialing the hub: {e}"))?;
    // Finds issued before the handshake can resolve `None` at once (the
    // dialer not yet counted as pending), so wait for it: it is part of
    // connecting, inside the timed span.
    dialer
        .established()
        .await
        .map_err(|e| anyhow!("connecting to the hub: {e:?}"))?;
    let mut pending = futures::stream::iter(ids.iter().zip(heads).map(|(id, heads)| {
        let find = fresh.find(id.clone());
        async move {
            let handle = find
                .await
                .map_err(|_| anyhow!("the fresh repo stopped"))?
                .ok_or_else(|| anyhow!("document {id} unavailable from the hub"))?;
            until_heads(&handle, heads).await;
            Ok::<_, anyhow::Error>(handle)
        }
    }))
    .buffer_unordered(window.max(1));
    let mut handles = Vec::with_capacity(ids.len());
    while let Some(handle) = pending.next().await {
        handles.push(handle?);
        bar.inc(1);
    }
    Ok(handles)
}

/// Runs initial at `docs.len()` documents, then resume with `changed` of
/// them changed on the hub, in `work` (an empty directory).
pub async fn run(
    docs: &[Doc],
    changed: usize,
    window: usize,
    work: &Path,
    bar: &ProgressBar,
) -> Result<SamodRun> {
    let hub_dir = work.join("hub");
    let fresh_dir = work.join("fresh");
    std::fs::create_dir_all(&hub_dir)?;
    std::fs::create_dir_all(&fresh_dir)?;

    // The hub's storage: each document created once, then the repo stopped
    // so its writes are on disk.
    bar.set_message("samod: filling the hub");
    bar.set_length(docs.len() as u64);
    bar.set_position(0);
    let filler = open(&hub_dir).await;
    let mut ids = Vec::with_capacity(docs.len());
    let mut heads = Vec::with_capacity(docs.len());
    {
        let mut creating = futures::stream::iter(docs.iter().map(|doc| {
            let filler = filler.clone();
            let bytes = doc.bytes.clone();
            async move {
                let loaded = Automerge::load(&bytes).context("loading a fixture case")?;
                let handle = filler
                    .create(loaded)
                    .await
                    .map_err(|_| anyhow!("the hub repo stopped"))?;
                let heads = sorted(handle.with_document(|d| d.get_heads()));
                Ok::<_, anyhow::Error>((handle.document_id().clone(), heads))
            }
        }))
        .buffered(64);
        while let Some(created) = creating.next().await {
            let (id, h) = created?;
            ids.push(id);
            heads.push(h);
            bar.inc(1);
        }
    }
    for (doc, h) in docs.iter().zip(&heads) {
        if sorted(doc.heads.clone()) != *h {
            bail!("samod changed a document's heads on create");
        }
    }
    filler.stop().await;

    // The hub restarted on its storage (nothing in memory), listening.
    let hub = open(&hub_dir).await;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let url = url::Url::parse(&format!("tcp://127.0.0.1:{port}"))?;
    let acceptor = hub
        .make_acceptor(url.clone())
        .map_err(|_| anyhow!("the hub repo stopped"))?;
    let accepting = tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            let _ = io.set_nodelay(true);
            if acceptor.accept_tokio_io(io).is_err() {
                break;
            }
        }
    });

    // Initial: a fresh repo on empty storage is told the ids and finds them
    // all at once.
    bar.set_message("samod: initial sync");
    bar.set_position(0);
    let fresh = open(&fresh_dir).await;
    let start = Instant::now();
    sync_all(&fresh, &url, &ids, &heads, window, bar).await?;
    let initial_synced = start.elapsed();
    fresh.stop().await;
    let initial_durable = start.elapsed();

    // Resume: the fresh repo is down (disconnected); `changed` documents get
    // one change each on the hub.
    bar.set_message("samod: changing on the hub");
    let picks = changed_indices(ids.len(), changed);
    let mut changed_ids = Vec::with_capacity(picks.len());
    let mut changed_heads = Vec::with_capacity(picks.len());
    for (n, &i) in picks.iter().enumerate() {
        let handle = hub
            .find(ids[i].clone())
            .await
            .map_err(|_| anyhow!("the hub repo stopped"))?
            .ok_or_else(|| anyhow!("the hub lost document {}", ids[i]))?;
        let new_heads = handle.with_document(|d| {
            d.transact::<_, _, automerge::AutomergeError>(|tx| {
                tx.put(ROOT, "bench_touch", n as i64)?;
                Ok(())
            })
            .map_err(|e| anyhow!("changing a document: {:?}", e.error))?;
            Ok::<_, anyhow::Error>(sorted(d.get_heads()))
        })?;
        changed_ids.push(ids[i].clone());
        changed_heads.push(new_heads);
    }

    // The fresh repo comes back on its storage holding all N (loaded into
    // handles before connecting, not timed), then reconnects.
    bar.set_message("samod: reloading the fresh repo");
    let fresh = open(&fresh_dir).await;
    let mut local = FuturesUnordered::new();
    for id in &ids {
        local.push(fresh.find(id.clone()));
    }
    let mut loaded = Vec::with_capacity(ids.len());
    while let Some(found) = local.next().await {
        let handle = found
            .map_err(|_| anyhow!("the fresh repo stopped"))?
            .ok_or_else(|| anyhow!("the fresh repo lost a document"))?;
        loaded.push(handle);
    }
    bar.set_message("samod: resume");
    bar.set_length(changed_ids.len() as u64);
    bar.set_position(0);
    let start = Instant::now();
    sync_all(&fresh, &url, &changed_ids, &changed_heads, window, bar).await?;
    let resume_synced = start.elapsed();
    fresh.stop().await;
    let resume_durable = start.elapsed();
    drop(loaded);

    hub.stop().await;
    accepting.abort();
    Ok(SamodRun {
        initial_synced,
        initial_durable,
        resume_synced,
        resume_durable,
    })
}
