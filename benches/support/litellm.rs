//! LiteLLM's proxy, the peer the issue compares against: started without a
//! database, with one model pointing at the same fake upstream.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

use super::{process::Guarded, server::free_port};

/// The key clients present to LiteLLM.
pub const MASTER_KEY: &str = "sk-bench-litellm";
/// Python imports take a while; the first start compiles bytecode.
const START_LIMIT: Duration = Duration::from_secs(180);

/// A running LiteLLM proxy, stopped when dropped.
pub struct LiteLlm {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The proxy process (its workers are below it).
    pub process: Guarded,
}

/// The `litellm` executable: the one given, else the one on `PATH`.
pub fn find(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("litellm"))
        .find(|candidate| candidate.is_file())
}

/// The proxy's configuration: `model` served by the OpenAI-compatible
/// upstream at `openai_base`.
fn config(model: &str, openai_base: &str) -> String {
    format!(
        "model_list:\n  - model_name: {model}\n    litellm_params:\n      model: openai/{model}\n      \
         api_base: {openai_base}\n      api_key: sk-fake-benchmark-key\n\
         general_settings:\n  master_key: {MASTER_KEY}\n\
         litellm_settings:\n  telemetry: false\n"
    )
}

impl LiteLlm {
    /// Starts `binary` with its files in `dir` and waits until it answers.
    pub async fn start(binary: &Path, dir: &Path, model: &str, openai_base: &str) -> Result<Self> {
        let config_path = dir.join("litellm.yaml");
        std::fs::write(&config_path, config(model, openai_base)).context("writing LiteLLM's configuration")?;
        let port = free_port()?;
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(&config_path)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(dir)
            // The price list ships with the package; do not fetch it.
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_LOG", "ERROR")
            .env_remove("DATABASE_URL");
        let process = Guarded::spawn(
            "LiteLLM",
            command,
            dir.join("litellm.log"),
            Signal::SIGTERM,
            Duration::from_secs(15),
        )?;
        let mut proxy = Self {
            base: format!("http://127.0.0.1:{port}"),
            process,
        };
        proxy.wait_until_ready().await?;
        Ok(proxy)
    }

    async fn wait_until_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let url = format!("{}/health/liveliness", self.base);
        let ready = || async {
            let answer = client.get(&url).timeout(Duration::from_secs(2)).send().await;
            answer.is_ok_and(|response| response.status().is_success())
        };
        self.process
            .wait_until_ready(START_LIMIT, Duration::from_millis(250), ready)
            .await
    }
}
