//! `flywheel-mock-provider [--bind 127.0.0.1:9999]`: serves the mock upstream until stopped
//! (used by the gateway benchmark and for manual testing).

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut bind = SocketAddr::from(([127, 0, 0, 1], 9999));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => {
                let value = args.next().ok_or_else(|| {
                    anyhow::anyhow!("--bind needs an address such as 127.0.0.1:9999")
                })?;
                bind = value
                    .parse()
                    .map_err(|err| anyhow::anyhow!("--bind {value}: {err}"))?;
            }
            other => anyhow::bail!(
                "unknown argument {other}; usage: flywheel-mock-provider [--bind ADDR]"
            ),
        }
    }
    let server = flywheel_mock_provider::MockServer::spawn(bind).await?;
    println!("mock provider listening on {}", server.base_url());
    server.wait().await;
    Ok(())
}
