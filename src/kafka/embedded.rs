//! The embedded broker: librdkafka's mock cluster, owned by one thread.
//!
//! The mock cluster is a raw handle (neither `Send` nor `Sync`), so a
//! dedicated thread owns it and everything else talks to it by message.

use std::{
    sync::mpsc::{self, Receiver, Sender},
    thread::JoinHandle,
};

use rdkafka::{error::KafkaError, mocking::MockCluster};

type Reply<T> = Sender<Result<T, KafkaError>>;

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        replication: i32,
        reply: Reply<()>,
    },
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("could not start its thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Cluster(KafkaError),
}

/// An in-process Kafka cluster listening on loopback; stops when dropped.
pub struct EmbeddedBroker {
    bootstrap: String,
    commands: Sender<Command>,
    owner: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    pub fn start(brokers: i32) -> Result<Self, EmbeddedError> {
        let (commands, inbox) = mpsc::channel();
        let (started_tx, started_rx) = mpsc::channel();
        let owner = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || own_cluster(brokers, started_tx, inbox))
            .map_err(EmbeddedError::Thread)?;
        let bootstrap = started_rx
            .recv()
            .unwrap_or(Err(KafkaError::MockCluster(
                rdkafka::types::RDKafkaErrorCode::Fail,
            )))
            .map_err(EmbeddedError::Cluster)?;
        Ok(Self {
            bootstrap,
            commands,
            owner: Some(owner),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<(), KafkaError> {
        self.call(|reply| Command::CreateTopic {
            name: name.to_owned(),
            partitions,
            replication,
            reply,
        })
    }

    fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, KafkaError> {
        let (reply, answer) = mpsc::channel();
        let stopped = || KafkaError::MockCluster(rdkafka::types::RDKafkaErrorCode::Fail);
        self.commands.send(command(reply)).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

fn own_cluster(
    brokers: i32,
    started: Sender<Result<String, KafkaError>>,
    inbox: Receiver<Command>,
) {
    let cluster = match MockCluster::new(brokers) {
        Ok(cluster) => cluster,
        Err(error) => {
            let _ = started.send(Err(error));
            return;
        }
    };
    let _ = started.send(Ok(cluster.bootstrap_servers()));
    // A closed inbox (the handle dropped without Shutdown) also stops the cluster.
    while let Ok(command) = inbox.recv() {
        match command {
            Command::CreateTopic {
                name,
                partitions,
                replication,
                reply,
            } => {
                let _ = reply.send(cluster.create_topic(&name, partitions, replication));
            }
            Command::Shutdown => break,
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(owner) = self.owner.take() {
            let _ = owner.join();
        }
    }
}
