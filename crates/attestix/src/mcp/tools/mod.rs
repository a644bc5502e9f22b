//! The tool table: the reference's 47 tools, one module per reference tool file,
//! in the order the reference registers them.

pub mod agent_card;
pub mod blockchain;
pub mod compliance;
pub mod credential;
pub mod delegation;
pub mod did;
pub mod identity;
pub mod provenance;
pub mod reputation;

use super::table::Tool;

/// Every tool, in the reference's registration order.
pub fn all() -> impl Iterator<Item = &'static Tool> {
    [
        identity::TOOLS,
        agent_card::TOOLS,
        did::TOOLS,
        delegation::TOOLS,
        reputation::TOOLS,
        compliance::TOOLS,
        credential::TOOLS,
        provenance::TOOLS,
        blockchain::TOOLS,
    ]
    .into_iter()
    .flatten()
}

/// The tool of this name.
pub fn find(name: &str) -> Option<&'static Tool> {
    all().find(|tool| tool.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::mcp::table::Place;

    #[test]
    fn there_are_47_uniquely_named_tools() {
        let names: HashSet<_> = all().map(|tool| tool.name).collect();
        assert_eq!(all().count(), 47);
        assert_eq!(names.len(), 47);
    }

    #[test]
    fn every_path_placeholder_is_a_path_argument() {
        for tool in all() {
            for segment in tool.path.split('/') {
                if let Some(names) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    for name in names.split('|') {
                        let arg = tool.args.iter().find(|arg| arg.name == name);
                        assert!(arg.is_some(), "{}: {name} is not an argument", tool.name);
                    }
                }
            }
            for arg in tool.args.iter().filter(|arg| arg.place == Place::Path) {
                assert!(
                    tool.path.contains(arg.name),
                    "{}: {} is not in the path",
                    tool.name,
                    arg.name
                );
            }
        }
    }
}
