//! Loading GOST YAML / JSON configuration into [`Config`].
//!
//! The text is first deserialised (serde-saphyr for YAML, serde_json for
//! JSON) into a small span-carrying tree, then converted by hand so that keys
//! match case-insensitively as in GOST (viper lower-cases keys) and every
//! error names the key path and source line. Unknown keys are ignored, as
//! GOST does.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ConfigError;
use super::metadata::{MetaEntry, MetaValue, Metadata};
use super::model::*;

/// A YAML/JSON node with its 1-based line (0 when unknown, e.g. JSON).
#[derive(Debug, Clone, PartialEq)]
struct Node {
    value: Raw,
    line: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<Raw>::deserialize(d)?;
        let line = u32::try_from(s.referenced.line()).unwrap_or(0);
        Ok(Node {
            value: s.value,
            line,
        })
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            out.push(n);
        }
        Ok(Raw::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Key>()? {
            let v = map.next_value::<Node>()?;
            out.push((k.0, v));
        }
        Ok(Raw::Map(out))
    }
}

/// A mapping key: any scalar, kept as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Str(s) => Ok(Key(s)),
            Raw::Int(i) => Ok(Key(i.to_string())),
            Raw::Bool(b) => Ok(Key(b.to_string())),
            Raw::Float(f) => Ok(Key(f.to_string())),
            Raw::Null => Ok(Key(String::new())),
            _ => Err(de::Error::custom("mapping keys must be scalars")),
        }
    }
}

/// The text format of a configuration source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (also accepts most JSON).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// Guess from a file name and its text: `.json` or a leading `{` → JSON.
    pub fn detect(name: &str, text: &str) -> Format {
        if name.to_ascii_lowercase().ends_with(".json") || text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

/// Parse configuration text; `source` names it in errors (e.g. `config.yaml`).
pub fn parse_str(text: &str, format: Format, source: &str) -> Result<Config, ConfigError> {
    let root: Option<Node> = match format {
        Format::Yaml => serde_saphyr::from_str(text).map_err(|e| {
            let line = e
                .location()
                .map_or(0, |l| u32::try_from(l.line()).unwrap_or(0));
            ConfigError::new(source, line, "", yaml_message(&e.to_string()))
        })?,
        Format::Json => serde_json::from_str(text).map_err(|e| {
            let line = u32::try_from(e.line()).unwrap_or(0);
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            ConfigError::new(source, line, "", msg)
        })?,
    };
    let cx = Cx { source };
    match root {
        None => Ok(Config::default()),
        Some(n) if n.value == Raw::Null => Ok(Config::default()),
        Some(n) => cx.config(&n),
    }
}

/// First line of a serde-saphyr message without its own location suffix.
fn yaml_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or("invalid YAML");
    first
        .split(" at line ")
        .next()
        .unwrap_or(first)
        .trim()
        .to_string()
}

struct Cx<'a> {
    source: &'a str,
}

/// A mapping node viewed with case-insensitive lookup.
struct Obj<'n> {
    entries: &'n [(String, Node)],
}

impl<'n> Obj<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
            .filter(|n| n.value != Raw::Null)
    }
}

impl Cx<'_> {
    fn err(&self, node: &Node, path: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::new(self.source, node.line, path, msg)
    }

    fn obj<'n>(&self, node: &'n Node, path: &str) -> Result<Obj<'n>, ConfigError> {
        match &node.value {
            Raw::Map(m) => Ok(Obj { entries: m }),
            Raw::Null => Ok(Obj { entries: &[] }),
            _ => Err(self.err(node, path, "expected a mapping")),
        }
    }

    fn seq<'n>(&self, node: Option<&'n Node>, path: &str) -> Result<&'n [Node], ConfigError> {
        match node.map(|n| (n, &n.value)) {
            None => Ok(&[]),
            Some((_, Raw::Seq(s))) => Ok(s),
            Some((n, _)) => Err(self.err(n, path, "expected a list")),
        }
    }

    fn string(&self, o: &Obj, key: &str, path: &str) -> Result<Option<String>, ConfigError> {
        let Some(n) = o.get(key) else { return Ok(None) };
        match &n.value {
            Raw::Str(s) => Ok(Some(s.clone())),
            Raw::Int(i) => Ok(Some(i.to_string())),
            Raw::Bool(b) => Ok(Some(b.to_string())),
            Raw::Float(f) => Ok(Some(f.to_string())),
            _ => Err(self.err(n, &format!("{path}.{key}"), "expected a string")),
        }
    }

    fn int(&self, o: &Obj, key: &str, path: &str) -> Result<Option<i64>, ConfigError> {
        let Some(n) = o.get(key) else { return Ok(None) };
        match &n.value {
            Raw::Int(i) => Ok(Some(*i)),
            Raw::Str(s) => s.trim().parse().map(Some).map_err(|_| {
                self.err(
                    n,
                    &format!("{path}.{key}"),
                    format!("invalid integer {s:?}"),
                )
            }),
            _ => Err(self.err(n, &format!("{path}.{key}"), "expected an integer")),
        }
    }

    fn boolean(&self, o: &Obj, key: &str, path: &str) -> Result<Option<bool>, ConfigError> {
        let Some(n) = o.get(key) else { return Ok(None) };
        match &n.value {
            Raw::Bool(b) => Ok(Some(*b)),
            Raw::Int(i) => Ok(Some(*i != 0)),
            Raw::Str(s) => crate::flags::parse_go_bool(s).map(Some).ok_or_else(|| {
                self.err(n, &format!("{path}.{key}"), format!("invalid bool {s:?}"))
            }),
            _ => Err(self.err(n, &format!("{path}.{key}"), "expected a bool")),
        }
    }

    fn string_list(&self, o: &Obj, key: &str, path: &str) -> Result<Vec<String>, ConfigError> {
        let p = format!("{path}.{key}");
        let mut out = Vec::new();
        for (i, n) in self.seq(o.get(key), &p)?.iter().enumerate() {
            match &n.value {
                Raw::Str(s) => out.push(s.clone()),
                Raw::Int(v) => out.push(v.to_string()),
                _ => return Err(self.err(n, &format!("{p}[{i}]"), "expected a string")),
            }
        }
        Ok(out)
    }

    fn config(&self, root: &Node) -> Result<Config, ConfigError> {
        let o = self.obj(root, "")?;
        let mut cfg = Config::default();
        for (i, n) in self.seq(o.get("services"), "services")?.iter().enumerate() {
            cfg.services
                .push(self.service(n, &format!("services[{i}]"))?);
        }
        for (i, n) in self.seq(o.get("chains"), "chains")?.iter().enumerate() {
            cfg.chains.push(self.chain(n, &format!("chains[{i}]"))?);
        }
        for (i, n) in self.seq(o.get("authers"), "authers")?.iter().enumerate() {
            let p = format!("authers[{i}]");
            let a = self.obj(n, &p)?;
            let mut auths = Vec::new();
            let ap = format!("{p}.auths");
            for (j, an) in self.seq(a.get("auths"), &ap)?.iter().enumerate() {
                auths.push(self.auth_obj(an, &format!("{ap}[{j}]"))?);
            }
            cfg.authers.push(AutherConfig {
                name: self.string(&a, "name", &p)?.unwrap_or_default(),
                auths,
                file: self.string(&a, "file", &p)?.unwrap_or_default(),
            });
        }
        for (i, n) in self.seq(o.get("bypasses"), "bypasses")?.iter().enumerate() {
            let p = format!("bypasses[{i}]");
            let b = self.obj(n, &p)?;
            cfg.bypasses.push(BypassConfig {
                name: self.string(&b, "name", &p)?.unwrap_or_default(),
                reverse: self.boolean(&b, "reverse", &p)?.unwrap_or(false)
                    || self.boolean(&b, "whitelist", &p)?.unwrap_or(false),
                matchers: self.string_list(&b, "matchers", &p)?,
            });
        }
        Ok(cfg)
    }

    fn metadata(&self, o: &Obj, path: &str) -> Result<Metadata, ConfigError> {
        let Some(n) = o.get("metadata") else {
            return Ok(Metadata::default());
        };
        let p = format!("{path}.metadata");
        let m = self.obj(n, &p)?;
        Ok(Metadata {
            entries: m
                .entries
                .iter()
                .map(|(k, v)| MetaEntry {
                    key: k.clone(),
                    value: meta_value(v),
                    line: v.line,
                })
                .collect(),
        })
    }

    fn auth(&self, o: &Obj, path: &str) -> Result<Option<AuthConfig>, ConfigError> {
        match o.get("auth") {
            None => Ok(None),
            Some(n) => self.auth_obj(n, &format!("{path}.auth")).map(Some),
        }
    }

    fn auth_obj(&self, n: &Node, path: &str) -> Result<AuthConfig, ConfigError> {
        let a = self.obj(n, path)?;
        Ok(AuthConfig {
            username: self.string(&a, "username", path)?.unwrap_or_default(),
            password: self.string(&a, "password", path)?.unwrap_or_default(),
            file: self.string(&a, "file", path)?.unwrap_or_default(),
        })
    }

    fn tls(&self, o: &Obj, path: &str) -> Result<Option<TlsConfig>, ConfigError> {
        let Some(n) = o.get("tls") else {
            return Ok(None);
        };
        let p = format!("{path}.tls");
        let t = self.obj(n, &p)?;
        Ok(Some(TlsConfig {
            cert_file: self.string(&t, "certFile", &p)?,
            key_file: self.string(&t, "keyFile", &p)?,
            ca_file: self.string(&t, "caFile", &p)?,
            secure: self.boolean(&t, "secure", &p)?,
            server_name: self.string(&t, "serverName", &p)?,
        }))
    }

    fn selector(&self, o: &Obj, path: &str) -> Result<Option<SelectorConfig>, ConfigError> {
        let Some(n) = o.get("selector") else {
            return Ok(None);
        };
        let p = format!("{path}.selector");
        let s = self.obj(n, &p)?;
        Ok(Some(SelectorConfig {
            strategy: self.string(&s, "strategy", &p)?,
            max_fails: self.int(&s, "maxFails", &p)?,
            fail_timeout: self.string(&s, "failTimeout", &p)?,
        }))
    }

    fn service(&self, n: &Node, path: &str) -> Result<ServiceConfig, ConfigError> {
        let o = self.obj(n, path)?;
        let handler = match o.get("handler") {
            None => None,
            Some(hn) => {
                let p = format!("{path}.handler");
                let h = self.obj(hn, &p)?;
                Some(HandlerConfig {
                    kind: self.string(&h, "type", &p)?.unwrap_or_default(),
                    chain: self.string(&h, "chain", &p)?,
                    retries: self.int(&h, "retries", &p)?,
                    auth: self.auth(&h, &p)?,
                    auther: self.string(&h, "auther", &p)?,
                    authers: self.string_list(&h, "authers", &p)?,
                    metadata: self.metadata(&h, &p)?,
                })
            }
        };
        let listener = match o.get("listener") {
            None => None,
            Some(ln) => {
                let p = format!("{path}.listener");
                let l = self.obj(ln, &p)?;
                Some(ListenerConfig {
                    kind: self.string(&l, "type", &p)?.unwrap_or_default(),
                    chain: self.string(&l, "chain", &p)?,
                    auth: self.auth(&l, &p)?,
                    tls: self.tls(&l, &p)?,
                    metadata: self.metadata(&l, &p)?,
                })
            }
        };
        let forwarder = match o.get("forwarder") {
            None => None,
            Some(fnode) => {
                let p = format!("{path}.forwarder");
                let f = self.obj(fnode, &p)?;
                let np = format!("{p}.nodes");
                let mut nodes = Vec::new();
                for (i, nn) in self.seq(f.get("nodes"), &np)?.iter().enumerate() {
                    let q = format!("{np}[{i}]");
                    let no = self.obj(nn, &q)?;
                    nodes.push(ForwardNodeConfig {
                        name: self.string(&no, "name", &q)?.unwrap_or_default(),
                        addr: self.string(&no, "addr", &q)?.unwrap_or_default(),
                        network: self.string(&no, "network", &q)?,
                        metadata: self.metadata(&no, &q)?,
                    });
                }
                Some(ForwarderConfig {
                    nodes,
                    selector: self.selector(&f, &p)?,
                })
            }
        };
        Ok(ServiceConfig {
            name: self.string(&o, "name", path)?.unwrap_or_default(),
            addr: self.string(&o, "addr", path)?.unwrap_or_default(),
            handler,
            listener,
            forwarder,
            bypass: self.string(&o, "bypass", path)?,
            metadata: self.metadata(&o, path)?,
            origin: Origin {
                source: self.source.to_string(),
                line: n.line,
            },
        })
    }

    fn chain(&self, n: &Node, path: &str) -> Result<ChainConfig, ConfigError> {
        let o = self.obj(n, path)?;
        let mut hops = Vec::new();
        let hp = format!("{path}.hops");
        for (i, hn) in self.seq(o.get("hops"), &hp)?.iter().enumerate() {
            let p = format!("{hp}[{i}]");
            let h = self.obj(hn, &p)?;
            let mut nodes = Vec::new();
            let np = format!("{p}.nodes");
            for (j, nn) in self.seq(h.get("nodes"), &np)?.iter().enumerate() {
                nodes.push(self.node(nn, &format!("{np}[{j}]"))?);
            }
            hops.push(HopConfig {
                name: self.string(&h, "name", &p)?.unwrap_or_default(),
                selector: self.selector(&h, &p)?,
                metadata: self.metadata(&h, &p)?,
                nodes,
            });
        }
        Ok(ChainConfig {
            name: self.string(&o, "name", path)?.unwrap_or_default(),
            hops,
            metadata: self.metadata(&o, path)?,
            origin: Origin {
                source: self.source.to_string(),
                line: n.line,
            },
        })
    }

    fn node(&self, n: &Node, path: &str) -> Result<NodeConfig, ConfigError> {
        let o = self.obj(n, path)?;
        let connector = match o.get("connector") {
            None => None,
            Some(cn) => {
                let p = format!("{path}.connector");
                let c = self.obj(cn, &p)?;
                Some(ConnectorConfig {
                    kind: self.string(&c, "type", &p)?.unwrap_or_default(),
                    auth: self.auth(&c, &p)?,
                    metadata: self.metadata(&c, &p)?,
                })
            }
        };
        let dialer = match o.get("dialer") {
            None => None,
            Some(dn) => {
                let p = format!("{path}.dialer");
                let d = self.obj(dn, &p)?;
                Some(DialerConfig {
                    kind: self.string(&d, "type", &p)?.unwrap_or_default(),
                    auth: self.auth(&d, &p)?,
                    tls: self.tls(&d, &p)?,
                    metadata: self.metadata(&d, &p)?,
                })
            }
        };
        Ok(NodeConfig {
            name: self.string(&o, "name", path)?.unwrap_or_default(),
            addr: self.string(&o, "addr", path)?.unwrap_or_default(),
            connector,
            dialer,
            metadata: self.metadata(&o, path)?,
        })
    }
}

fn meta_value(n: &Node) -> MetaValue {
    match &n.value {
        Raw::Null => MetaValue::Null,
        Raw::Bool(b) => MetaValue::Bool(*b),
        Raw::Int(i) => MetaValue::Int(*i),
        Raw::Float(f) => MetaValue::Float(*f),
        Raw::Str(s) => MetaValue::Str(s.clone()),
        Raw::Seq(s) => MetaValue::List(s.iter().map(meta_value).collect()),
        Raw::Map(m) => MetaValue::Map(m.iter().map(|(k, v)| (k.clone(), meta_value(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
Services:
- name: service-0
  ADDR: :8420
  handler:
    type: relay
    metadata:
      bind: true
      readTimeout: 30s
      udpBufferSize: 8192
      list: [a, 1]
  listener:
    type: tcp
";

    #[test]
    fn yaml_case_insensitive_with_lines() {
        let cfg = parse_str(YAML, Format::Yaml, "c.yaml").unwrap();
        let s = &cfg.services[0];
        assert_eq!((s.name.as_str(), s.addr.as_str()), ("service-0", ":8420"));
        assert_eq!(s.origin.line, 2);
        let md = &s.handler.as_ref().unwrap().metadata;
        assert_eq!(md.get_bool("BIND"), Ok(Some(true)));
        assert_eq!(md.get("readtimeout").unwrap().line, 8);
        assert_eq!(md.get_int("udpBufferSize"), Ok(Some(8192)));
        assert_eq!(
            md.get("list").unwrap().value,
            MetaValue::List(vec![MetaValue::Str("a".into()), MetaValue::Int(1)])
        );
    }

    #[test]
    fn json_same_model() {
        let json = r#"{"services":[{"name":"service-0","addr":":8420",
            "handler":{"type":"relay","metadata":{"bind":true,"readTimeout":"30s","udpBufferSize":8192,"list":["a",1]}},
            "listener":{"type":"tcp"}}]}"#;
        let a = parse_str(YAML, Format::Yaml, "c.yaml").unwrap();
        let b = parse_str(json, Format::Json, "c.json").unwrap();
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap()
        );
    }

    #[test]
    fn errors_name_line_and_path() {
        let e = parse_str(
            "services:\n- name: a\n  handler: 3\n",
            Format::Yaml,
            "c.yaml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yaml:3: services[0].handler: expected a mapping"
        );
        let e = parse_str("services: [\n", Format::Yaml, "c.yaml").unwrap_err();
        assert!(e.to_string().starts_with("c.yaml:"), "{e}");
        assert!(!e.to_string().contains('\n'));
        let e = parse_str("{\"services\": 1", Format::Json, "c.json").unwrap_err();
        assert!(e.to_string().starts_with("c.json:1: "), "{e}");
        let e = parse_str("services: {a: 1}\n", Format::Yaml, "c.yaml").unwrap_err();
        assert_eq!(e.to_string(), "c.yaml:1: services: expected a list");
    }

    #[test]
    fn empty_documents() {
        assert_eq!(parse_str("", Format::Yaml, "x").unwrap(), Config::default());
        assert_eq!(
            parse_str("# c\n", Format::Yaml, "x").unwrap(),
            Config::default()
        );
    }
}
