//! The dependency graph of an ecosystem: start waves (every service after all it depends on),
//! the reverse order for stopping, and cycles reported whole (`api → db → api`) at the
//! `depends_on` entry that closes them.

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::spec::{Diagnostic, Ecosystem};

/// Services and their `depends_on` edges (from dependent to dependency).
#[derive(Debug, Clone)]
pub struct DependencyGraph {
    graph: DiGraph<String, ()>,
}

impl DependencyGraph {
    /// Build the graph; a cycle is an error naming the whole loop.
    pub fn from_ecosystem(eco: &Ecosystem) -> Result<Self, Diagnostic> {
        let mut graph = DiGraph::new();
        let index: indexmap::IndexMap<&str, NodeIndex> = eco
            .services
            .keys()
            .map(|name| (name.as_str(), graph.add_node(name.clone())))
            .collect();
        for s in eco.services.values() {
            for d in &s.depends_on {
                if let Some(&to) = index.get(d.name.as_str()) {
                    graph.add_edge(index[s.name.as_str()], to, ());
                }
            }
        }
        let g = Self { graph };
        if let Some(cycle) = g.find_cycle() {
            // Point at the edge that closes the loop: the last service's entry for the first.
            let from = &cycle[cycle.len() - 2];
            let to = &cycle[cycle.len() - 1];
            let span = eco.services[from.as_str()]
                .depends_on
                .iter()
                .find(|d| &d.name == to)
                .map(|d| d.name_span.clone())
                .unwrap_or(0..0);
            return Err(Diagnostic::error(
                "graph::cycle",
                format!("dependency cycle: {}", cycle.join(" → ")),
                &eco.source,
                span,
            )
            .with_label("this dependency closes the cycle")
            .with_help("services start after what they depend on, so a cycle can never start: remove one of these `depends_on` entries"));
        }
        Ok(g)
    }

    /// A cycle as a list of names whose first and last are the same, if there is one.
    /// Deterministic: the search starts from services in file order.
    fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks = vec![Mark::New; self.graph.node_count()];
        for start in self.graph.node_indices() {
            if marks[start.index()] != Mark::New {
                continue;
            }
            // Iterative DFS keeping the active path.
            let mut path: Vec<NodeIndex> = vec![start];
            let mut iters = vec![self.dependencies_in_order(start)];
            marks[start.index()] = Mark::Active;
            while let Some(it) = iters.last_mut() {
                match it.pop() {
                    Some(next) => match marks[next.index()] {
                        Mark::Active => {
                            let pos = path.iter().position(|&n| n == next).unwrap_or(0);
                            let mut cycle: Vec<String> =
                                path[pos..].iter().map(|&n| self.graph[n].clone()).collect();
                            cycle.push(self.graph[next].clone());
                            return Some(cycle);
                        }
                        Mark::New => {
                            marks[next.index()] = Mark::Active;
                            path.push(next);
                            iters.push(self.dependencies_in_order(next));
                        }
                        Mark::Done => {}
                    },
                    None => {
                        if let Some(done) = path.pop() {
                            marks[done.index()] = Mark::Done;
                        }
                        iters.pop();
                    }
                }
            }
        }
        None
    }

    /// Dependencies of `n` as a stack that pops in file order.
    fn dependencies_in_order(&self, n: NodeIndex) -> Vec<NodeIndex> {
        // petgraph lists the newest edge first; reversed that is file order, and a stack pops
        // from the end, so keep petgraph's order.
        self.graph
            .neighbors_directed(n, Direction::Outgoing)
            .collect()
    }

    /// Start waves: each wave's services depend only on earlier waves. Within a wave, file order.
    pub fn waves(&self) -> Vec<Vec<String>> {
        let n = self.graph.node_count();
        let mut level = vec![0usize; n];
        // Node indices are in file order; a service's level is 1 + the deepest dependency.
        // Relax until stable: the graph is acyclic, so at most n rounds.
        for _ in 0..n {
            let mut changed = false;
            for node in self.graph.node_indices() {
                let want = self
                    .graph
                    .neighbors_directed(node, Direction::Outgoing)
                    .map(|d| level[d.index()] + 1)
                    .max()
                    .unwrap_or(0);
                if want != level[node.index()] {
                    level[node.index()] = want;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let depth = level.iter().copied().max().map_or(0, |m| m + 1);
        let mut waves = vec![Vec::new(); depth];
        for node in self.graph.node_indices() {
            waves[level[node.index()]].push(self.graph[node].clone());
        }
        waves
    }

    /// Start order, flattened.
    pub fn start_order(&self) -> Vec<String> {
        self.waves().into_iter().flatten().collect()
    }

    /// Stop order: dependents before what they depend on.
    pub fn stop_order(&self) -> Vec<String> {
        let mut order = self.start_order();
        order.reverse();
        order
    }

    /// Every edge as (dependent, dependency), in file order.
    pub fn edges(&self) -> Vec<(String, String)> {
        let mut edges: Vec<(String, String)> = self
            .graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| (self.graph[a].clone(), self.graph[b].clone()))
            .collect();
        edges.sort_by_key(|(a, _)| self.graph.node_indices().position(|n| &self.graph[n] == a));
        edges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ecosystem::decode;
    use crate::spec::{Diagnostics, SourceFile, yaml};

    fn eco(text: &str) -> Ecosystem {
        let src = SourceFile::new("t.pactown.yaml", text);
        let mut d = Diagnostics::default();
        let root = yaml::parse(&src, &mut d).unwrap();
        decode(&src, &root, &|_| None, &mut d).unwrap()
    }

    macro_rules! waves {
        ($name:ident, $yaml:expr, $expected:expr) => {
            #[test]
            fn $name() {
                let g = DependencyGraph::from_ecosystem(&eco($yaml)).unwrap();
                let expected: Vec<Vec<&str>> = $expected;
                assert_eq!(g.waves(), expected);
            }
        };
    }

    waves!(
        chain,
        "services:\n  gw: {depends_on: [web]}\n  web: {depends_on: [api]}\n  api: {depends_on: [db]}\n  db: {}\n",
        vec![vec!["db"], vec!["api"], vec!["web"], vec!["gw"]]
    );
    waves!(
        diamond,
        "services:\n  a: {}\n  b: {depends_on: [a]}\n  c: {depends_on: [a]}\n  d: {depends_on: [b, c]}\n",
        vec![vec!["a"], vec!["b", "c"], vec!["d"]]
    );
    waves!(
        independent_keep_file_order,
        "services:\n  z: {}\n  a: {}\n",
        vec![vec!["z", "a"]]
    );

    #[test]
    fn cycle_is_named_whole() {
        let e = eco(
            "services:\n  api: {depends_on: [db]}\n  db: {depends_on: [cache]}\n  cache: {depends_on: [api]}\n",
        );
        let err = DependencyGraph::from_ecosystem(&e).unwrap_err();
        assert_eq!(err.message, "dependency cycle: api → db → cache → api");
    }

    #[test]
    fn stop_is_reverse_of_start() {
        let g = DependencyGraph::from_ecosystem(&eco(
            "services:\n  web: {depends_on: [api]}\n  api: {}\n",
        ))
        .unwrap();
        assert_eq!(g.start_order(), vec!["api", "web"]);
        assert_eq!(g.stop_order(), vec!["web", "api"]);
    }
}
