//! Where ONNX Runtime placed a session's nodes, read from its verbose
//! session log, and the log xfer keeps while a session is built.

use ort::logging::LogLevel;

use crate::models::runtime::CPU_PROVIDER;

/// Where ONNX Runtime placed a session's nodes, from the "Node placements" lines
/// of its verbose session log (`All nodes placed on [P]. Number of nodes: N`, or
/// one `Node(s) placed on [P]…` line per provider followed by its nodes).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    pub providers: Vec<ProviderNodes>,
}

/// The nodes one provider got.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProviderNodes {
    pub provider: String,
    pub nodes: usize,
    /// Operator types of the nodes ONNX Runtime listed, with their counts (it lists
    /// them only when several providers share the graph).
    pub(crate) op_types: Vec<(String, usize)>,
}

impl Placement {
    /// Reads the placement from ONNX Runtime's log messages (other messages are ignored).
    pub(crate) fn parse<'a>(messages: impl IntoIterator<Item = &'a str>) -> Placement {
        let mut out = Placement::default();
        let mut listing = false;
        for m in messages {
            if let Some(i) = m.find("placed on [") {
                let rest = &m[i + "placed on [".len()..];
                let Some((name, rest)) = rest.split_once(']') else {
                    continue;
                };
                let nodes = rest
                    .rsplit(':')
                    .next()
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                out.providers.push(ProviderNodes {
                    provider: name.to_owned(),
                    nodes,
                    op_types: Vec::new(),
                });
                listing = m.contains("Node(s) placed on");
            } else if listing && m.starts_with(' ') {
                let last = out.providers.last_mut().expect("a header came first");
                for item in m.split(", ") {
                    let op = item.trim().split(" (").next().unwrap_or("").trim();
                    if op.is_empty() {
                        continue;
                    }
                    match last.op_types.iter_mut().find(|(o, _)| o == op) {
                        Some((_, n)) => *n += 1,
                        None => last.op_types.push((op.to_owned(), 1)),
                    }
                }
            } else {
                listing = false;
            }
        }
        out
    }

    /// The nodes on `provider`.
    pub(crate) fn nodes_on(&self, provider: &str) -> usize {
        self.providers
            .iter()
            .filter(|p| p.provider == provider)
            .map(|p| p.nodes)
            .sum()
    }

    pub(crate) fn total(&self) -> usize {
        self.providers.iter().map(|p| p.nodes).sum()
    }

    /// "53 nodes on CPUExecutionProvider", "120 on CUDAExecutionProvider, 3 on CPUExecutionProvider".
    pub fn describe(&self) -> String {
        if self.providers.is_empty() {
            return "not reported by ONNX Runtime".into();
        }
        self.providers
            .iter()
            .enumerate()
            .map(|(i, p)| match (i, p.nodes) {
                (0, 1) => format!("1 node on {}", p.provider),
                (0, n) => format!("{n} nodes on {}", p.provider),
                (_, n) => format!("{n} on {}", p.provider),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The providers that got nodes, `registered` first in their order, then the CPU, then any other.
    pub(crate) fn providers_used(&self, registered: &[&str]) -> Vec<String> {
        let mut used: Vec<&ProviderNodes> = self.providers.iter().filter(|p| p.nodes > 0).collect();
        let rank = |p: &str| {
            registered
                .iter()
                .position(|r| *r == p)
                .unwrap_or(if p == CPU_PROVIDER {
                    registered.len()
                } else {
                    usize::MAX
                })
        };
        used.sort_by_key(|p| rank(&p.provider));
        used.into_iter().map(|p| p.provider.clone()).collect()
    }
}

/// The session log xfer keeps: the placement lines and ONNX Runtime's warnings.
#[derive(Default)]
pub(crate) struct SessionLog {
    pub(crate) placement: Vec<String>,
    pub(crate) warnings: Vec<String>,
    in_placement: bool,
}

impl SessionLog {
    pub(crate) fn record(&mut self, level: LogLevel, message: &str) {
        if message.contains("placed on [")
            || message == "Node placements"
            || (self.in_placement && message.starts_with(' '))
        {
            self.in_placement = true;
            self.placement.push(message.to_owned());
            return;
        }
        self.in_placement = false;
        if level >= LogLevel::Warning && self.warnings.len() < 50 {
            self.warnings.push(message.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::runtime;

    #[test]
    fn placement_is_read_from_onnx_runtimes_log() {
        // Lines as ONNX Runtime 1.31.1 logs them (session log, verbose): one provider…
        let p = Placement::parse([
            "Node placements",
            " All nodes placed on [CPUExecutionProvider]. Number of nodes: 53",
            "SaveMLValueNameIndexMapping",
        ]);
        assert_eq!(p.providers.len(), 1);
        assert_eq!(p.nodes_on(CPU_PROVIDER), 53);
        assert_eq!(p.describe(), "53 nodes on CPUExecutionProvider");
        // …or several, each followed by its nodes (one line, or one line each).
        let p = Placement::parse([
            "Node placements",
            " Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 3",
            "  Conv (c1), Conv (c2), MemcpyFromHost (Memcpy), ",
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2",
            "   Shape (s)",
            "   Gather (g)",
            "Done saving OrtValue mappings.",
            "  not a node list",
        ]);
        assert_eq!(p.nodes_on(runtime::CUDA_PROVIDER), 3);
        assert_eq!(p.nodes_on(CPU_PROVIDER), 2);
        assert_eq!(p.total(), 5);
        assert_eq!(
            p.providers[0].op_types,
            [("Conv".to_string(), 2), ("MemcpyFromHost".to_string(), 1)]
        );
        assert_eq!(
            p.providers[1].op_types,
            [("Shape".to_string(), 1), ("Gather".to_string(), 1)]
        );
        assert_eq!(
            p.describe(),
            "3 nodes on CUDAExecutionProvider, 2 on CPUExecutionProvider"
        );
    }
}
