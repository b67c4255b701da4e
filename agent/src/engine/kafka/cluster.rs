//! A target cluster as restore and drill use it: its admin and consumer
//! clients, created from one configuration, with errors that name the
//! cluster and the step.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

use super::client::{self, Watch};
use super::target::KafkaTarget;
use crate::engine::settings::KafkaConnection;
use crate::error::{Error, Result};
use crate::secret::Secret;

#[derive(Clone)]
pub struct Cluster {
    pub address: String,
    pub config: ClientConfig,
    pub timeout: Duration,
}

/// What the cluster says of one topic.
pub struct TopicState {
    pub partitions: usize,
    /// `(partition, low, high)`
    pub offsets: Vec<(i32, i64, i64)>,
}

impl Cluster {
    /// The client configuration and address for `target` (`flag` names it
    /// in errors): how backup, restore and drill each reach their cluster.
    pub fn new(
        target: &KafkaTarget,
        connection: &KafkaConnection,
        password: Option<&Secret>,
        flag: &str,
    ) -> Result<Cluster> {
        let config = client::config(target, connection, password.map(Secret::expose), flag)?;
        Ok(Cluster {
            address: target.address(),
            config,
            timeout: connection.timeout,
        })
    }

    pub fn fail(&self, watch: &Watch, doing: &str, e: &KafkaError) -> Error {
        client::failure(watch, &self.address, doing, e, Error::target)
    }

    pub fn admin(&self) -> Result<AdminClient<Watch>> {
        self.config
            .create_with_context(Watch::default())
            .map_err(|e| Error::usage(format!("{}: {e}", self.address)))
    }

    /// A consumer for group `group` that never joins it (offsets are
    /// committed for an empty group, as a standalone consumer does).
    pub fn consumer(&self, group: &str) -> Result<BaseConsumer<Watch>> {
        let mut config = self.config.clone();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted");
        config
            .create_with_context(Watch::default())
            .map_err(|e| Error::usage(format!("{}: {e}", self.address)))
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    /// The number of brokers and the topics that exist among `names`.
    pub fn topics(
        &self,
        consumer: &BaseConsumer<Watch>,
        names: &[&str],
    ) -> Result<(usize, BTreeMap<String, TopicState>)> {
        let metadata = client::metadata(consumer, self.timeout)
            .map_err(|e| self.fail(consumer.context(), "reading the cluster's metadata", &e))?;
        let mut found = BTreeMap::new();
        for topic in metadata.topics() {
            if !names.contains(&topic.name()) || topic.error().is_some() {
                continue;
            }
            let mut offsets = Vec::new();
            for p in topic.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(topic.name(), p.id(), self.timeout)
                    .map_err(|e| {
                        self.fail(
                            consumer.context(),
                            &format!("reading the offsets of {}/{}", topic.name(), p.id()),
                            &e,
                        )
                    })?;
                offsets.push((p.id(), low, high));
            }
            offsets.sort_unstable();
            found.insert(
                topic.name().to_string(),
                TopicState {
                    partitions: topic.partitions().len(),
                    offsets,
                },
            );
        }
        Ok((metadata.brokers().len(), found))
    }

    /// Configs set on each topic itself (blocking).
    pub fn own_configs(
        &self,
        names: &[&str],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let admin = self.admin()?;
        let specifiers: Vec<ResourceSpecifier<'_>> =
            names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        let results =
            futures::executor::block_on(admin.describe_configs(&specifiers, &self.options()))
                .map_err(|e| self.fail(admin.inner().context(), "reading topic configs", &e))?;
        let mut configs = BTreeMap::new();
        for (name, result) in names.iter().zip(results) {
            let resource = result.map_err(|code| {
                Error::target(format!(
                    "{}: reading the configs of {name} failed: {code}",
                    self.address
                ))
            })?;
            configs.insert(
                name.to_string(),
                resource
                    .entries
                    .into_iter()
                    .filter(|e| e.source == ConfigSource::DynamicTopic && !e.is_sensitive)
                    .filter_map(|e| e.value.map(|v| (e.name, v)))
                    .collect(),
            );
        }
        Ok(configs)
    }

    /// A broker's setting (for example `message.max.bytes`), if readable.
    pub fn broker_config(&self, broker: i32, key: &str) -> Option<String> {
        let admin = self.admin().ok()?;
        let results = futures::executor::block_on(
            admin.describe_configs(&[ResourceSpecifier::Broker(broker)], &self.options()),
        )
        .ok()?;
        let resource = results.into_iter().next()?.ok()?;
        resource.get(key).and_then(|e| e.value.clone())
    }

    /// Creates topics with their partition counts, replication and configs.
    pub async fn create_topics(
        &self,
        topics: &[(String, i32, i32, BTreeMap<String, String>)],
    ) -> Result<()> {
        // librdkafka refuses an empty request.
        if topics.is_empty() {
            return Ok(());
        }
        let admin = self.admin()?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, partitions, replication, configs)| {
                configs.iter().fold(
                    NewTopic::new(name, *partitions, TopicReplication::Fixed(*replication)),
                    |t, (k, v)| t.set(k, v),
                )
            })
            .collect();
        let results = admin
            .create_topics(&new, &self.options())
            .await
            .map_err(|e| self.fail(admin.inner().context(), "creating topics", &e))?;
        for result in results {
            if let Err((name, code)) = result {
                return Err(Error::target(format!(
                    "{}: creating topic {name} failed: {code}",
                    self.address
                )));
            }
        }
        Ok(())
    }

    /// Sets each topic's own configs to exactly `configs` (what is not
    /// listed goes back to the broker's default).
    pub async fn set_configs(&self, topics: &[(String, BTreeMap<String, String>)]) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let admin = self.admin()?;
        let alters: Vec<AlterConfig<'_>> = topics
            .iter()
            .map(|(name, configs)| {
                configs.iter().fold(
                    AlterConfig::new(ResourceSpecifier::Topic(name)),
                    |a, (k, v)| a.set(k, v),
                )
            })
            .collect();
        let results = admin
            .alter_configs(&alters, &self.options())
            .await
            .map_err(|e| self.fail(admin.inner().context(), "setting topic configs", &e))?;
        for result in results {
            if let Err((resource, code)) = result {
                return Err(Error::target(format!(
                    "{}: setting the configs of {resource:?} failed: {code}",
                    self.address
                )));
            }
        }
        Ok(())
    }

    /// The content hash (`format::PartitionDigest` of that one record) of
    /// the record at `offset` (blocking).
    pub fn record_hash(&self, topic: &str, partition: i32, offset: i64) -> Result<String> {
        use rdkafka::Message;
        let consumer = self.consumer("vertice-restore")?;
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
            .map_err(|e| Error::target(format!("{}: {e}", self.address)))?;
        consumer
            .assign(&list)
            .map_err(|e| self.fail(consumer.context(), "assigning a partition", &e))?;
        let deadline = std::time::Instant::now() + self.timeout;
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.offset() == offset => {
                    let mut digest = super::format::PartitionDigest::default();
                    digest.add(&super::backup::record_of(topic, &m));
                    return Ok(digest.hex());
                }
                _ => continue,
            }
        }
        Err(Error::target(format!(
            "{}: the record at {topic}/{partition} offset {offset} could not be read within {} s",
            self.address,
            self.timeout.as_secs()
        )))
    }

    /// Deletes topics; the names of those that could not be deleted.
    pub async fn delete_topics(&self, names: &[String]) -> Vec<String> {
        if names.is_empty() {
            return Vec::new();
        }
        let Ok(admin) = self.admin() else {
            return names.to_vec();
        };
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        match admin.delete_topics(&refs, &self.options()).await {
            Err(_) => names.to_vec(),
            Ok(results) => results
                .into_iter()
                .filter_map(|r| r.err().map(|(name, _)| name))
                .collect(),
        }
    }
}
