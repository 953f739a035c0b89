//! Row 1: durable appends of fixed-size records from concurrent producers, one in flight each,
//! under the shared harness of [`crate::load`]. Drivers: Tidings over HTTP (one record per
//! `POST /api/topics/{t}/records`), Redis Streams `XADD`, NATS JetStream publish awaiting its ack.
//! Durability is the server's setting, chosen by whoever started it; this module only appends.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::load::{run_closed_loop, LoadSpec, Producer};
use crate::tidings::{LogSystem, Poster, ServerArgs};

/// Options of `peers append`.
#[derive(Args, Debug)]
pub struct AppendArgs {
    /// Which system to load.
    #[arg(long, value_enum)]
    pub system: LogSystem,
    /// The server.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Concurrent producers, one connection and one append in flight each.
    #[arg(long, default_value_t = 64)]
    pub producers: usize,
    /// Seconds to append for.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Bytes per record.
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// Stream / topic to append to (created when missing).
    #[arg(long, default_value = "bench")]
    pub stream: String,
}

impl AppendArgs {
    fn spec(&self) -> LoadSpec {
        LoadSpec {
            producers: self.producers,
            duration: Duration::from_secs_f64(self.seconds),
            size: self.size,
            server_pids: self.server.server_pids.clone(),
        }
    }
}

/// Runs the append workload against the chosen system and returns its JSON report.
pub async fn run(args: &AppendArgs) -> Result<serde_json::Value> {
    let report = match args.system {
        LogSystem::Tidings => {
            let tidings = args.server.tidings()?;
            let token = tidings.token("peers-bench", &["admin"])?;
            tidings.create_topic(&token, &args.stream).await?;
            let url = tidings.records_url(&args.stream);
            run_closed_loop(&args.spec(), |_| TidingsProducer::connect(&url, &token)).await?
        }
        LogSystem::Redis => {
            let client = redis::Client::open(args.server.url.as_str())?;
            run_closed_loop(&args.spec(), |_| {
                RedisProducer::connect(&client, args.stream.clone())
            })
            .await?
        }
        LogSystem::Nats => {
            create_nats_stream(&args.server.url, &args.stream).await?;
            run_closed_loop(&args.spec(), |_| {
                NatsProducer::connect(&args.server.url, &args.stream)
            })
            .await?
        }
    };
    Ok(serde_json::to_value(report)?)
}

/// One keep-alive HTTP connection publishing one record per request.
struct TidingsProducer {
    poster: Poster,
}

impl TidingsProducer {
    async fn connect(url: &str, token: &str) -> Result<Self> {
        Ok(TidingsProducer {
            poster: Poster::connect(url, token).await?,
        })
    }
}

impl Producer for TidingsProducer {
    async fn append(&mut self, value: &[u8]) -> Result<()> {
        // The value is stored as the JSON text sent: a string whose quotes make it `size` bytes.
        let text = std::str::from_utf8(&value[2..])?;
        let body = format!(r#"{{"records":[{{"value":"{text}"}}]}}"#);
        self.poster.post(body, 202, "publishing a record").await
    }
}

/// One Redis connection appending with `XADD stream * v VALUE`.
struct RedisProducer {
    connection: redis::aio::MultiplexedConnection,
    stream: String,
}

impl RedisProducer {
    async fn connect(client: &redis::Client, stream: String) -> Result<Self> {
        Ok(RedisProducer {
            connection: client.get_multiplexed_async_connection().await?,
            stream,
        })
    }
}

impl Producer for RedisProducer {
    async fn append(&mut self, value: &[u8]) -> Result<()> {
        let _id: String = redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg("v")
            .arg(value)
            .query_async(&mut self.connection)
            .await?;
        Ok(())
    }
}

/// One NATS connection publishing to JetStream and awaiting each ack.
struct NatsProducer {
    jetstream: async_nats::jetstream::Context,
    subject: String,
}

impl NatsProducer {
    async fn connect(url: &str, stream: &str) -> Result<Self> {
        let client = async_nats::connect(url).await?;
        Ok(NatsProducer {
            jetstream: async_nats::jetstream::new(client),
            subject: format!("{stream}.records"),
        })
    }
}

impl Producer for NatsProducer {
    async fn append(&mut self, value: &[u8]) -> Result<()> {
        let ack = self
            .jetstream
            .publish(self.subject.clone(), value.to_vec().into())
            .await?;
        ack.await?;
        Ok(())
    }
}

/// Creates the file-backed JetStream stream `name` on subjects `name.>` (default settings:
/// one replica, limits retention); the server's `sync_interval` decides when it fsyncs.
pub async fn create_nats_stream(
    url: &str,
    name: &str,
) -> Result<async_nats::jetstream::stream::Stream> {
    use async_nats::jetstream::stream::{Config, StorageType};
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream
        .get_or_create_stream(Config {
            name: name.to_owned(),
            subjects: vec![format!("{name}.>")],
            storage: StorageType::File,
            ..Default::default()
        })
        .await?;
    Ok(stream)
}
