//! What blockchain anchoring computes before anything is sent: the EAS schema and
//! its UID, and the Merkle tree over a batch of audit entries with its inclusion
//! proofs. No I/O; the chain client lives in the server.
//!
//! ```
//! use attestix_core::anchor::{inclusion_proof, leaf_hash, merkle_root, verify_inclusion};
//!
//! let entries: Vec<&[u8]> = vec![b"{\"a\":1}", b"{\"b\":2}", b"{\"c\":3}"];
//! let leaves: Vec<[u8; 32]> = entries.iter().map(|e| leaf_hash(e)).collect();
//! let root = merkle_root(&leaves).expect("a batch has entries");
//! let proof = inclusion_proof(&leaves, 2).expect("entry 2 exists");
//! assert!(verify_inclusion(&leaves[2], 2, leaves.len(), &proof, &root));
//! ```

use alloy_primitives::{keccak256, Address, B256};
use alloy_sol_types::SolValue as _;
use sha2::{Digest, Sha256};

/// The EAS schema every Attestix anchor is attested under.
pub const ANCHOR_SCHEMA: &str =
    "bytes32 artifactHash, string artifactType, string artifactId, string issuerDid";

/// The schema UID as the EAS `SchemaRegistry` computes it:
/// `keccak256(abi.encodePacked(schema, resolver, revocable))`.
pub fn schema_uid(schema: &str, resolver: Address, revocable: bool) -> B256 {
    keccak256((schema.to_owned(), resolver, revocable).abi_encode_packed())
}

/// The UID of [`ANCHOR_SCHEMA`] with no resolver, revocable: what the server
/// registers on first use.
pub fn anchor_schema_uid() -> B256 {
    schema_uid(ANCHOR_SCHEMA, Address::ZERO, true)
}

/// Domain separation of RFC 6962 §2.1: a leaf can never pass for an inner node.
const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// `sha256(0x00 ‖ entry)`: the leaf of one audit entry's serialized bytes.
pub fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update([LEAF_PREFIX])
        .chain_update(entry)
        .finalize()
        .into()
}

/// `sha256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update([NODE_PREFIX])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The root of the tree built level by level, pairing neighbours and promoting a
/// level's odd last node unchanged (the reference's construction, whose root is
/// RFC 6962's Merkle Tree Hash). `None` for an empty batch.
pub fn merkle_root(leaves: &[[u8; 32]]) -> Option<[u8; 32]> {
    let mut level = leaves.to_vec();
    if level.is_empty() {
        return None;
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => node_hash(left, right),
                [promoted] => *promoted,
                _ => unreachable!("chunks(2) yields one or two nodes"),
            })
            .collect();
    }
    level.first().copied()
}

/// The audit path of leaf `index`: the sibling hashes from the leaf up, leaving
/// out the levels where the node is promoted. `None` when `index` is out of range.
pub fn inclusion_proof(leaves: &[[u8; 32]], index: usize) -> Option<Vec<[u8; 32]>> {
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    let mut level = leaves.to_vec();
    let mut position = index;
    while level.len() > 1 {
        let sibling = position ^ 1;
        if sibling < level.len() {
            proof.push(level[sibling]);
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => node_hash(left, right),
                [promoted] => *promoted,
                _ => unreachable!("chunks(2) yields one or two nodes"),
            })
            .collect();
        position /= 2;
    }
    Some(proof)
}

/// Whether `proof` takes leaf `index` of a batch of `count` leaves to `root`.
pub fn verify_inclusion(
    leaf: &[u8; 32],
    index: usize,
    count: usize,
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> bool {
    if index >= count {
        return false;
    }
    let mut node = *leaf;
    let mut position = index;
    let mut size = count;
    let mut siblings = proof.iter();
    while size > 1 {
        if position % 2 == 1 {
            let Some(left) = siblings.next() else {
                return false;
            };
            node = node_hash(left, &node);
        } else if position + 1 < size {
            let Some(right) = siblings.next() else {
                return false;
            };
            node = node_hash(&node, right);
        }
        position /= 2;
        size = size.div_ceil(2);
    }
    siblings.next().is_none() && node == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 §2.1's Merkle Tree Hash, written from its recursive definition:
    /// split at the largest power of two below n (the top bit of n - 1).
    fn rfc6962_root(leaves: &[[u8; 32]]) -> [u8; 32] {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let split = 1 << (leaves.len() - 1).ilog2();
        node_hash(
            &rfc6962_root(&leaves[..split]),
            &rfc6962_root(&leaves[split..]),
        )
    }

    /// RFC 6962 §2.1.1's PATH(m, D[n]), from its recursive definition.
    fn rfc6962_path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
        if leaves.len() == 1 {
            return Vec::new();
        }
        let k = 1 << (leaves.len() - 1).ilog2();
        if m < k {
            let mut path = rfc6962_path(m, &leaves[..k]);
            path.push(rfc6962_root(&leaves[k..]));
            path
        } else {
            let mut path = rfc6962_path(m - k, &leaves[k..]);
            path.push(rfc6962_root(&leaves[..k]));
            path
        }
    }

    fn batch(count: usize) -> Vec<[u8; 32]> {
        (0..count)
            .map(|i| leaf_hash(format!("{{\"entry\":{i}}}").as_bytes()))
            .collect()
    }

    #[test]
    fn the_schema_uid_is_the_one_the_spec_and_the_chain_know() {
        assert_eq!(
            anchor_schema_uid().to_string(),
            "0x395d14d6af29e5b35fa76509e1293f057168c2de16487177ba65bb5e61e0e2ab"
        );
        assert_ne!(
            schema_uid(ANCHOR_SCHEMA, Address::ZERO, false),
            anchor_schema_uid()
        );
    }

    #[test]
    fn roots_and_paths_are_rfc_6962s_for_1_to_40_leaves() {
        for count in 1..=40 {
            let leaves = batch(count);
            let root = merkle_root(&leaves).unwrap();
            assert_eq!(root, rfc6962_root(&leaves), "root of {count}");
            for index in 0..count {
                let proof = inclusion_proof(&leaves, index).unwrap();
                assert_eq!(proof, rfc6962_path(index, &leaves), "path {index}/{count}");
                assert!(verify_inclusion(
                    &leaves[index],
                    index,
                    count,
                    &proof,
                    &root
                ));
            }
        }
    }

    #[test]
    fn a_proof_fails_for_another_leaf_position_count_or_a_tampered_sibling() {
        let leaves = batch(13);
        let root = merkle_root(&leaves).unwrap();
        let proof = inclusion_proof(&leaves, 5).unwrap();
        assert!(verify_inclusion(&leaves[5], 5, 13, &proof, &root));
        assert!(!verify_inclusion(&leaves[6], 5, 13, &proof, &root));
        assert!(!verify_inclusion(&leaves[5], 4, 13, &proof, &root));
        // A count that changes the path's shape (a proof does not bind counts whose
        // trees agree along the path, as in RFC 6962).
        assert!(!verify_inclusion(&leaves[5], 5, 6, &proof, &root));
        assert!(!verify_inclusion(&leaves[5], 13, 13, &proof, &root));
        let mut tampered = proof.clone();
        tampered[0][0] ^= 1;
        assert!(!verify_inclusion(&leaves[5], 5, 13, &tampered, &root));
        let mut longer = proof;
        longer.push(root);
        assert!(!verify_inclusion(&leaves[5], 5, 13, &longer, &root));
        assert_eq!(merkle_root(&[]), None);
        assert_eq!(inclusion_proof(&leaves, 13), None);
    }

    #[test]
    fn leaves_and_nodes_are_domain_separated() {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        // The bytes of an inner node, fed as a leaf, do not give that node.
        let mut inner = vec![NODE_PREFIX];
        inner.extend_from_slice(&a);
        inner.extend_from_slice(&b);
        assert_ne!(leaf_hash(&inner[1..]), node_hash(&a, &b));
        let plain: [u8; 32] = Sha256::digest(b"a").into();
        assert_ne!(leaf_hash(b"a"), plain);
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            // RFC 6962's hash of an empty leaf: SHA-256 of the single byte 0x00.
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
