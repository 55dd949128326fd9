//! `flywheel knowledge`: collections, ingestion of files and folders with progress, search.
//!
//! The CLI runs the same service as `serve` on the same database and index directory. Run it
//! while the server is stopped when the embedded backend is used: the index files belong to one
//! process at a time (the server would not see the CLI's additions until its next start, when
//! it reconciles with the database).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use flywheel_config::Config;
use flywheel_core::{Principal, TenantId};
use flywheel_services::knowledge::{
    DocumentInput, DocumentSubmitted, KnowledgeService, NewCollectionInput, SearchFilter,
    SearchInput, SearchMode,
};
use flywheel_services::{local_cli_principal, ServiceError};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{start_local_models, Components};
use crate::cli::KnowledgeCommand;
use crate::commands::{cli_principal, open_for_cli};

/// Extensions ingested from folders.
const EXTENSIONS: [&str; 7] = ["md", "markdown", "txt", "text", "html", "htm", "pdf"];

pub async fn run(mut config: Config, command: KnowledgeCommand) -> anyhow::Result<()> {
    // The CLI waits for each document, however long, and loads only the embedding model.
    config.knowledge.sync_max_chars = usize::MAX;
    config.models.chat.clear();
    let components = open_for_cli(&config).await?;
    let knowledge = components
        .knowledge
        .clone()
        .context("the knowledge base is disabled (knowledge.enabled = false)")?;
    let result = match command {
        KnowledgeCommand::Collections { tenant } => {
            let actor = actor(&config, tenant)?;
            let collections = knowledge.list_collections(&actor).await?;
            if collections.is_empty() {
                println!("no collections; create one with `flywheel knowledge create NAME`");
            }
            for summary in collections {
                let collection = summary.collection;
                println!(
                    "{:<24} {:>6} documents ({} searchable) {:>8} chunks  {} ({} dims)  {}",
                    collection.name,
                    summary.documents,
                    summary.ready_documents,
                    summary.chunks,
                    collection.embedding_model,
                    collection.dimensions,
                    collection.id
                );
            }
            Ok(())
        }
        KnowledgeCommand::Create {
            name,
            description,
            model,
            tenant,
        } => {
            let actor = actor(&config, tenant)?;
            wait_for_models(&config, &components).await?;
            let collection = knowledge
                .create_collection(
                    &actor,
                    NewCollectionInput {
                        name,
                        description,
                        embedding_model: model,
                    },
                )
                .await?;
            println!(
                "created collection {} ({}), embedded by {} ({} dimensions)",
                collection.name, collection.id, collection.embedding_model, collection.dimensions
            );
            Ok(())
        }
        KnowledgeCommand::Ingest {
            paths,
            collection,
            tags,
            tenant,
        } => {
            let actor = actor(&config, tenant)?;
            wait_for_models(&config, &components).await?;
            ingest(&knowledge, &actor, &paths, &collection, &tags).await
        }
        KnowledgeCommand::Search {
            query,
            collection,
            mode,
            top_k,
            tenant,
        } => {
            let actor = actor(&config, tenant)?;
            wait_for_models(&config, &components).await?;
            let outcome = knowledge
                .search(
                    &actor,
                    SearchInput {
                        collection,
                        query,
                        top_k: Some(top_k),
                        num_candidates: None,
                        mode: SearchMode::parse(&mode).unwrap_or_default(),
                        filter: SearchFilter::default(),
                        rescore: false,
                    },
                )
                .await?;
            if outcome.results.is_empty() {
                println!("no passage matches");
            }
            for (idx, result) in outcome.results.iter().enumerate() {
                println!(
                    "[{}] {:.4}  {}{}  (document {}, characters {}..{})",
                    idx + 1,
                    result.score,
                    result.title,
                    result
                        .heading_path
                        .iter()
                        .filter(|heading| **heading != result.title)
                        .map(|heading| format!(" > {heading}"))
                        .collect::<String>(),
                    result.document_id,
                    result.start_offset,
                    result.end_offset
                );
                println!("    {}", result.content.replace('\n', "\n    "));
            }
            Ok(())
        }
    };
    if let Err(err) = knowledge.flush().await {
        eprintln!("warning: could not snapshot the knowledge index: {err}");
    }
    components.close().await;
    result
}

fn actor(config: &Config, tenant: Option<String>) -> anyhow::Result<Principal> {
    match tenant {
        None => cli_principal(config),
        Some(tenant) => {
            let tenant =
                TenantId::parse(&tenant).map_err(|err| anyhow::anyhow!("--tenant: {err}"))?;
            let mut principal = local_cli_principal(tenant);
            principal.operator = false;
            Ok(principal)
        }
    }
}

/// Loads the local embedding model when the knowledge base uses one.
async fn wait_for_models(config: &Config, components: &Components) -> anyhow::Result<()> {
    let Some(local) = components.local_models.clone() else {
        return Ok(());
    };
    let spinner = ProgressBar::new_spinner();
    spinner.set_message("loading the local embedding model…");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let (task, _stop) = start_local_models(config, local);
    task.await.context("loading local models")?;
    spinner.finish_and_clear();
    Ok(())
}

async fn ingest(
    knowledge: &KnowledgeService,
    actor: &Principal,
    paths: &[PathBuf],
    collection: &str,
    tags: &[String],
) -> anyhow::Result<()> {
    let files = collect_files(paths)?;
    if files.is_empty() {
        anyhow::bail!(
            "no Markdown, text, HTML or PDF files under {}",
            paths
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match knowledge.collection(actor, collection).await {
        Ok(_) => {}
        Err(ServiceError::NotFound(_)) => {
            let created = knowledge
                .create_collection(
                    actor,
                    NewCollectionInput {
                        name: collection.to_owned(),
                        description: None,
                        embedding_model: None,
                    },
                )
                .await?;
            eprintln!(
                "created collection {} embedded by {}",
                created.name, created.embedding_model
            );
        }
        Err(err) => return Err(err.into()),
    }
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files {elapsed} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let (mut created, mut unchanged, mut failed, mut chunks, mut pages) = (0, 0, 0, 0i64, 0i64);
    for (root, file) in &files {
        let source = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        bar.set_message(source.clone());
        let outcome = match tokio::fs::read(file).await {
            Ok(bytes) => knowledge
                .add_document(
                    actor,
                    DocumentInput {
                        collection: collection.to_owned(),
                        bytes,
                        file_name: file
                            .file_name()
                            .map(|name| name.to_string_lossy().into_owned()),
                        source: Some(source.clone()),
                        tags: tags.to_vec(),
                        ..DocumentInput::default()
                    },
                )
                .await
                .map_err(anyhow::Error::from),
            Err(err) => Err(anyhow::Error::from(err).context("reading the file")),
        };
        match outcome {
            Ok(DocumentSubmitted::Unchanged(_)) => unchanged += 1,
            Ok(DocumentSubmitted::Ingested(document))
            | Ok(DocumentSubmitted::Queued(document, _)) => {
                created += 1;
                chunks += document.chunk_count;
                pages += document.pages.unwrap_or(1);
            }
            Err(err) => {
                failed += 1;
                bar.suspend(|| eprintln!("error: {}: {err:#}", file.display()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{created} ingested ({pages} pages, {chunks} chunks), {unchanged} unchanged, {failed} failed in {seconds:.1} s ({:.1} pages/s)",
        pages as f64 / seconds.max(1e-9)
    );
    if failed > 0 {
        anyhow::bail!("{failed} of {} files could not be ingested", files.len());
    }
    Ok(())
}

/// `(root, file)` for every supported file under the given paths, in a stable order; a file
/// given directly is its own root's child.
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let mut files = Vec::new();
    for path in paths {
        let metadata =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        if metadata.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            files.extend(found.into_iter().map(|file| (path.clone(), file)));
        } else {
            let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
            files.push((root, path.clone()));
        }
    }
    Ok(files)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, found)?;
        } else if path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
        {
            found.push(path);
        }
    }
    Ok(())
}
