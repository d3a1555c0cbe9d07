//! GOST's configuration structs (go-gost/x `config/config.go`), the subset the
//! relay setups use. Both the YAML/JSON loader and the `-L`/`-F` converter
//! produce this model; `-O` serialises it with GOST's key spellings.

use serde::Serialize;

use super::metadata::Metadata;

/// The whole configuration (top level of a GOST config file).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Config {
    /// `services`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceConfig>,
    /// `chains`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<ChainConfig>,
    /// `authers`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authers: Vec<AutherConfig>,
    /// `bypasses`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bypasses: Vec<BypassConfig>,
}

impl Config {
    /// Append the objects of `other` (GOST merges several `-C` and the CLI this way).
    pub fn merge(&mut self, other: Config) {
        self.services.extend(other.services);
        self.chains.extend(other.chains);
        self.authers.extend(other.authers);
        self.bypasses.extend(other.bypasses);
    }
}

/// Where an object came from, for error messages (`config.yaml:12`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// File name, `-C` inline, or `command line`.
    pub source: String,
    /// 1-based line of the object, 0 when unknown.
    pub line: u32,
}

/// One `services[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceConfig {
    /// `name`.
    pub name: String,
    /// `addr` (listen address, `:8420` form allowed).
    pub addr: String,
    /// `handler`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<HandlerConfig>,
    /// `listener`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerConfig>,
    /// `forwarder`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarder: Option<ForwarderConfig>,
    /// `bypass` (name of a top-level bypass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypass: Option<String>,
    /// `metadata` (service scope: `dialTimeout`, …).
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// Source location (not serialised).
    #[serde(skip)]
    pub origin: Origin,
}

/// `service.handler`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HandlerConfig {
    /// `type` (default `auto`).
    #[serde(rename = "type")]
    pub kind: String,
    /// `chain` (name of a top-level chain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// `retries`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// `auth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// `auther` (name of a top-level auther).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auther: Option<String>,
    /// `authers` (names of top-level authers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authers: Vec<String>,
    /// `metadata`.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// `service.listener`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ListenerConfig {
    /// `type` (default `tcp`).
    #[serde(rename = "type")]
    pub kind: String,
    /// `chain` (rtcp / rudp listeners bind through it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// `auth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// `tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// `metadata`.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// `service.forwarder`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ForwarderConfig {
    /// `nodes`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<ForwardNodeConfig>,
    /// `selector`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<SelectorConfig>,
}

/// `forwarder.nodes[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ForwardNodeConfig {
    /// `name`.
    pub name: String,
    /// `addr`.
    pub addr: String,
    /// `network` (`tcp` / `udp`), optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `metadata`.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// `chains[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChainConfig {
    /// `name`.
    pub name: String,
    /// `hops`.
    pub hops: Vec<HopConfig>,
    /// `metadata`.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// Source location (not serialised).
    #[serde(skip)]
    pub origin: Origin,
}

/// `chains[].hops[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HopConfig {
    /// `name`.
    pub name: String,
    /// `selector`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<SelectorConfig>,
    /// `metadata`.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// `nodes`.
    pub nodes: Vec<NodeConfig>,
}

/// `hops[].nodes[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeConfig {
    /// `name`.
    pub name: String,
    /// `addr`.
    pub addr: String,
    /// `connector` (default type `http`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<ConnectorConfig>,
    /// `dialer` (default type `tcp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialer: Option<DialerConfig>,
    /// `metadata`.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// `node.connector`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConnectorConfig {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `auth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// `metadata`.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// `node.dialer`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DialerConfig {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `auth` (ssh dialers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// `tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// `metadata`.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// `auth` objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthConfig {
    /// `username`.
    pub username: String,
    /// `password`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// `file`: more users, one `username password` pair per line (`#` starts a comment).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub file: String,
}

/// `tls` objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// `certFile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// `keyFile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// `caFile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// `secure`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// `serverName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// `selector` objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectorConfig {
    /// `strategy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// `maxFails`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_fails: Option<i64>,
    /// `failTimeout` (Go duration string, or seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_timeout: Option<String>,
}

/// `authers[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AutherConfig {
    /// `name`.
    pub name: String,
    /// `auths`.
    pub auths: Vec<AuthConfig>,
    /// `file`: users, one `username password` pair per line.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub file: String,
}

/// `bypasses[]` (parsed and printed; not yet enforced by the resolver).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BypassConfig {
    /// `name`.
    pub name: String,
    /// `reverse` (whitelist mode).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reverse: bool,
    /// `matchers`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<String>,
}
