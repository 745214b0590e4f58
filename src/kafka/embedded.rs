//! The embedded broker: librdkafka's mock cluster, owned by one thread.
//!
//! The mock cluster is a raw handle (neither `Send` nor `Sync`), so a
//! dedicated thread owns it and everything else talks to it by message.

use std::{
    sync::mpsc::{self, Receiver, Sender},
    thread::JoinHandle,
    time::Duration,
};

use rdkafka::{
    config::ClientConfig,
    error::{KafkaError, KafkaResult},
    mocking::MockCluster,
    producer::{BaseProducer, Producer},
    types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr},
};

/// A fault the embedded broker can be told to suffer, for chaos testing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every broker drops its connections and refuses new ones.
    BrokersDown,
    /// Every broker accepts connections again.
    BrokersUp,
    /// The next `count` produce requests fail with retriable errors.
    ProduceErrors { count: usize },
    /// Every request takes this much longer (zero removes the delay).
    RoundTripTime(Duration),
    /// Every partition of `topic` moves to the next broker (needs two or more).
    MoveLeaders { topic: String, partitions: i32 },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::BrokersDown => write!(f, "brokers down"),
            Fault::BrokersUp => write!(f, "brokers up"),
            Fault::ProduceErrors { count } => write!(f, "{count} produce errors"),
            Fault::RoundTripTime(rtt) if rtt.is_zero() => write!(f, "round trip restored"),
            Fault::RoundTripTime(rtt) => write!(f, "+{} ms round trip", rtt.as_millis()),
            Fault::MoveLeaders { topic, .. } => write!(f, "leaders of {topic} moved"),
        }
    }
}

/// What retriable produce errors look like: a broker short of replicas, or a
/// leader in transition.
const RETRIABLE_PRODUCE_ERRORS: [RDKafkaRespErr; 2] = [
    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
    RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
];

/// How long a new group waits for more members before its first assignment.
const GROUP_FORMING_MS: i32 = 500;

/// Every broker, in the mock cluster's broker-id arguments.
const ALL_BROKERS: i32 = -1;

type Reply<T> = Sender<Result<T, KafkaError>>;

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        replication: i32,
        reply: Reply<()>,
    },
    Inject {
        fault: Fault,
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

    pub fn inject(&self, fault: Fault) -> Result<(), KafkaError> {
        self.call(|reply| Command::Inject { fault, reply })
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
    // The cluster belongs to this (otherwise idle) client, which gives the
    // raw handle needed for the group setting below.
    let owner: KafkaResult<BaseProducer> = ClientConfig::new()
        .set("test.mock.num.brokers", brokers.to_string())
        .create();
    let owner = match owner {
        Ok(owner) => owner,
        Err(error) => {
            let _ = started.send(Err(error));
            return;
        }
    };
    let Some(cluster) = owner.client().mock_cluster() else {
        let _ = started.send(Err(KafkaError::MockCluster(RDKafkaErrorCode::Fail)));
        return;
    };
    // Groups form after 500 ms instead of Kafka's 3 s wait for more
    // members: the consumers of one process start together, so this
    // gathers them into one rebalance (with no wait, the first member took
    // everything and the others' joining cost a 6 s rebalance), and the
    // first order no longer waits seconds.
    // SAFETY: the handle is the live cluster `owner` created; it outlives
    // the call.
    unsafe {
        let handle = rdkafka::bindings::rd_kafka_handle_mock_cluster(owner.client().native_ptr());
        rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(handle, GROUP_FORMING_MS);
    }
    let _ = started.send(Ok(cluster.bootstrap_servers()));
    let mut leader_shift = 0;
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
            Command::Inject { fault, reply } => {
                let _ = reply.send(inject(&cluster, brokers, &mut leader_shift, fault));
            }
            Command::Shutdown => break,
        }
    }
}

fn inject<C: rdkafka::ClientContext>(
    cluster: &MockCluster<'_, C>,
    brokers: i32,
    leader_shift: &mut i32,
    fault: Fault,
) -> Result<(), KafkaError> {
    match fault {
        Fault::BrokersDown => cluster.broker_down(ALL_BROKERS),
        Fault::BrokersUp => cluster.broker_up(ALL_BROKERS),
        Fault::ProduceErrors { count } => {
            let errors: Vec<_> = RETRIABLE_PRODUCE_ERRORS
                .iter()
                .copied()
                .cycle()
                .take(count)
                .collect();
            cluster.request_errors(RDKafkaApiKey::Produce, &errors);
            Ok(())
        }
        Fault::RoundTripTime(rtt) => cluster.broker_round_trip_time(ALL_BROKERS, rtt),
        Fault::MoveLeaders { topic, partitions } => {
            if brokers < 2 {
                return Err(KafkaError::MockCluster(
                    rdkafka::types::RDKafkaErrorCode::InvalidReplicationFactor,
                ));
            }
            *leader_shift += 1;
            // Broker ids run from 1; partition p leads on a rotating broker.
            for partition in 0..partitions {
                let leader = (partition + *leader_shift) % brokers + 1;
                cluster.partition_leader(&topic, partition, Some(leader))?;
            }
            Ok(())
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
