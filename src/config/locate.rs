//! Where each key and value sits in a YAML file, by key path.
//!
//! serde works on values and forgets positions, and `serde_yaml` only locates syntax
//! errors. So before deserializing, the loader walks the parser events of `yaml-rust2`
//! once and records, for every node, the position of its key (for mapping entries) and of
//! its value, under the same dotted path the diagnostics use
//! (`apps.thrift.sign_in.steps[0][1]`). Any later check, serde's or ours, can then point
//! at a line and column by path. The walk also catches duplicate keys, naming both lines,
//! which the value-level parser would report with only one.
//!
//! The walk keeps its own stack rather than recursing, and stops at
//! [`CONFIG_DEPTH_MAX`] levels with a syntax error: each node's path repeats every
//! level above it, so an unbounded depth would cost memory by its square.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::limits::CONFIG_DEPTH_MAX;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_marker(m: &Marker) -> Pos {
        // yaml-rust2 counts lines from 1 but columns from 0; editors count both from 1.
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// Positions of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// The key naming the node, when it is a mapping entry.
    pub key: Option<Pos>,
    /// The value itself.
    pub value: Pos,
}

/// Which part of a node a diagnostic should point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
}

/// A key that appears twice in one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// Path of the repeated entry.
    pub path: String,
    pub first: Pos,
    pub second: Pos,
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub pos: Pos,
}

/// Key path → positions, for one file.
#[derive(Debug, Default, Clone)]
pub struct LocateMap {
    nodes: HashMap<String, Loc>,
}

impl LocateMap {
    /// Positions recorded for exactly this path.
    pub fn get(&self, path: &str) -> Option<Loc> {
        self.nodes.get(path).copied()
    }

    /// The best position for a diagnostic about `path`. A path the file does not spell
    /// out (a missing key, a default) falls back to the closest ancestor that it does,
    /// pointing at that ancestor's key: that is where the missing thing belongs.
    pub fn find(&self, path: &str, part: Part) -> Option<Pos> {
        if let Some(loc) = self.get(path) {
            return Some(match part {
                Part::Key => loc.key.unwrap_or(loc.value),
                Part::Value => loc.value,
            });
        }
        let mut current = path;
        while let Some(up) = parent(current) {
            if let Some(loc) = self.get(up) {
                return Some(loc.key.unwrap_or(loc.value));
            }
            current = up;
        }
        None
    }
}

/// The path of a mapping entry `key` under `parent`.
pub fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path of sequence item `index` under `parent`.
pub fn item(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The path one level up, or `None` at the root.
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    // A path ends either in `[n]` or in `.key`; cut at whichever separator comes last.
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Records positions for `source`, whose root node lives at path `prefix` (empty for
/// `usher.yaml`, `apps` for a file under `apps/`). Only the first document is read.
pub fn locate(source: &str, prefix: &str) -> Result<(LocateMap, Vec<DuplicateKey>), SyntaxError> {
    let mut walker = Walker {
        prefix: prefix.to_string(),
        ..Walker::default()
    };
    let mut parser = Parser::new_from_str(source);
    parser.load(&mut walker, false).map_err(|e| SyntaxError {
        message: e.info().to_string(),
        pos: Pos::from_marker(e.marker()),
    })?;
    if let Some(pos) = walker.too_deep {
        return Err(SyntaxError {
            message: format!("the document nests deeper than {CONFIG_DEPTH_MAX} levels"),
            pos,
        });
    }
    Ok((
        LocateMap {
            nodes: walker.nodes,
        },
        walker.duplicates,
    ))
}

enum Frame {
    Map {
        path: String,
        /// The key just read, waiting for its value.
        key: Option<(String, Pos)>,
        seen: HashMap<String, Pos>,
        /// Where the parser said the mapping starts; see `on_key`.
        start: Pos,
        has_keys: bool,
    },
    Seq {
        path: String,
        next: usize,
    },
    /// Inside a complex (non-scalar) key: nothing in it gets a path.
    Skip {
        depth: usize,
    },
}

#[derive(Default)]
struct Walker {
    prefix: String,
    stack: Vec<Frame>,
    nodes: HashMap<String, Loc>,
    duplicates: Vec<DuplicateKey>,
    done: bool,
    /// Where the document first nested past [`CONFIG_DEPTH_MAX`]; the walk stops there.
    too_deep: Option<Pos>,
}

/// Where a new node goes.
enum Slot {
    Node {
        path: String,
        key: Option<Pos>,
    },
    /// The node is a mapping key, already handled.
    Key,
    Ignored,
}

impl Walker {
    /// Decides the path of a node starting at `pos`; `scalar` is its text when it is one.
    fn slot(&mut self, pos: Pos, scalar: Option<&str>, container: bool) -> Slot {
        let prefix = self.prefix.clone();
        match self.stack.last_mut() {
            None => Slot::Node {
                path: prefix,
                key: None,
            },
            Some(Frame::Skip { depth }) => {
                if container {
                    *depth += 1;
                }
                Slot::Ignored
            }
            Some(Frame::Seq { path, next }) => {
                let p = item(path, *next);
                *next += 1;
                Slot::Node { path: p, key: None }
            }
            Some(Frame::Map {
                path,
                key,
                seen,
                start,
                has_keys,
            }) => match key.take() {
                Some((name, key_pos)) => {
                    let p = child(path, &name);
                    if let Some(first) = seen.get(&name) {
                        self.duplicates.push(DuplicateKey {
                            path: p.clone(),
                            first: *first,
                            second: key_pos,
                        });
                    } else {
                        seen.insert(name, key_pos);
                    }
                    Slot::Node {
                        path: p,
                        key: Some(key_pos),
                    }
                }
                None => {
                    // The first key of a block mapping comes before the marker the
                    // parser gives the mapping (it reports the position after the key);
                    // a flow mapping's marker is its `{`, before the key. Point a block
                    // mapping at its first key, a flow mapping at its brace.
                    if !*has_keys {
                        *has_keys = true;
                        if pos < *start {
                            let map_path = path.clone();
                            if let Some(loc) = self.nodes.get_mut(&map_path) {
                                loc.value = pos;
                            }
                        }
                    }
                    *key = Some((scalar.unwrap_or("?").to_string(), pos));
                    if container {
                        self.stack.push(Frame::Skip { depth: 1 });
                    }
                    Slot::Key
                }
            },
        }
    }

    fn record(&mut self, path: String, key: Option<Pos>, value: Pos) {
        self.nodes.entry(path).or_insert(Loc { key, value });
    }

    fn close(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Skip { depth }) if *depth > 1 => *depth -= 1,
            _ => {
                self.stack.pop();
            }
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.done {
            return;
        }
        let pos = Pos::from_marker(&mark);
        let opens = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..));
        if opens && self.stack.len() >= CONFIG_DEPTH_MAX {
            self.too_deep = Some(pos);
            self.done = true;
            return;
        }
        match event {
            Event::Scalar(text, ..) => {
                if let Slot::Node { path, key } = self.slot(pos, Some(&text), false) {
                    self.record(path, key, pos);
                }
            }
            Event::Alias(_) => {
                if let Slot::Node { path, key } = self.slot(pos, None, false) {
                    self.record(path, key, pos);
                }
            }
            Event::SequenceStart(..) => {
                if let Slot::Node { path, key } = self.slot(pos, None, true) {
                    self.record(path.clone(), key, pos);
                    self.stack.push(Frame::Seq { path, next: 0 });
                }
            }
            Event::MappingStart(..) => {
                if let Slot::Node { path, key } = self.slot(pos, None, true) {
                    self.record(path.clone(), key, pos);
                    self.stack.push(Frame::Map {
                        path,
                        key: None,
                        seen: HashMap::new(),
                        start: pos,
                        has_keys: false,
                    });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::DocumentEnd => self.done = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    const SAMPLE: &str = "\
issuer: http://localhost:9000
apps:
  thrift:
    name: Thrift
    redirect_uris:
      - http://localhost:3000/callback
    sign_in:
      steps:
        - [password, gooogle]
        - { options: [totp], force: true }
";

    #[test]
    fn finds_keys_and_values_of_nested_entries() {
        let (map, dups) = locate(SAMPLE, "").unwrap();
        assert!(dups.is_empty());
        let issuer = map.get("issuer").unwrap();
        assert_eq!(issuer.key, Some(at(1, 1)));
        assert_eq!(issuer.value, at(1, 9));
        let name = map.get("apps.thrift.name").unwrap();
        assert_eq!(name.key, Some(at(4, 5)));
        assert_eq!(name.value, at(4, 11));
        assert_eq!(map.get("apps.thrift").unwrap().key, Some(at(3, 3)));
    }

    #[test]
    fn block_mapping_value_points_at_its_first_key() {
        let (map, _) = locate(SAMPLE, "").unwrap();
        assert_eq!(map.get("apps.thrift").unwrap().value, at(4, 5));
        assert_eq!(map.get("").unwrap().value, at(1, 1));
    }

    #[test]
    fn finds_sequence_items_in_block_and_flow_style() {
        let (map, _) = locate(SAMPLE, "").unwrap();
        let first = map.get("apps.thrift.redirect_uris[0]").unwrap();
        assert_eq!(first.key, None);
        assert_eq!(first.value, at(6, 9));
        assert_eq!(
            map.get("apps.thrift.sign_in.steps[0]").unwrap().value,
            at(9, 11)
        );
        assert_eq!(
            map.get("apps.thrift.sign_in.steps[0][1]").unwrap().value,
            at(9, 22)
        );
    }

    #[test]
    fn flow_mapping_points_at_its_brace_and_keys_inside_it() {
        let (map, _) = locate(SAMPLE, "").unwrap();
        assert_eq!(
            map.get("apps.thrift.sign_in.steps[1]").unwrap().value,
            at(10, 11)
        );
        let force = map.get("apps.thrift.sign_in.steps[1].force").unwrap();
        assert_eq!(force.key, Some(at(10, 30)));
        assert_eq!(force.value, at(10, 37));
        assert_eq!(
            map.get("apps.thrift.sign_in.steps[1].options[0]")
                .unwrap()
                .value,
            at(10, 23)
        );
    }

    #[test]
    fn prefix_is_prepended_to_every_path() {
        let (map, _) = locate("thrift:\n  name: Thrift\n", "apps").unwrap();
        assert_eq!(map.get("apps.thrift.name").unwrap().key, Some(at(2, 3)));
        assert!(map.get("thrift.name").is_none());
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor_key() {
        let (map, _) = locate(SAMPLE, "").unwrap();
        assert_eq!(
            map.find("apps.thrift.client_id", Part::Value),
            Some(at(3, 3))
        );
        assert_eq!(
            map.find("apps.thrift.sign_in.steps[5][0]", Part::Value),
            Some(at(8, 7))
        );
        assert_eq!(map.find("apps.thrift.name", Part::Key), Some(at(4, 5)));
    }

    #[test]
    fn reports_duplicate_keys_with_both_positions() {
        let (_, dups) = locate("a: 1\nb:\n  c: 1\n  c: 2\n", "").unwrap();
        assert_eq!(
            dups,
            vec![DuplicateKey {
                path: "b.c".into(),
                first: at(3, 3),
                second: at(4, 3),
            }]
        );
    }

    #[test]
    fn reports_syntax_errors_with_a_position() {
        let err = locate("a: 1\n b: [\n", "").unwrap_err();
        assert_eq!(err.pos, at(2, 3));
        assert!(err.message.contains("mapping values"), "{}", err.message);
    }

    #[test]
    fn complex_keys_do_not_disturb_later_paths() {
        let (map, _) = locate("? [a, b]\n: 1\nc: 2\n", "").unwrap();
        assert_eq!(map.get("c").unwrap().value, at(3, 4));
    }

    #[test]
    fn parent_cuts_one_segment() {
        assert_eq!(
            parent("apps.thrift.sign_in.steps[0][1]"),
            Some("apps.thrift.sign_in.steps[0]")
        );
        assert_eq!(parent("apps.thrift"), Some("apps"));
        assert_eq!(parent("apps"), Some(""));
        assert_eq!(parent(""), None);
    }
}
