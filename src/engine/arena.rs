//! The activation arena: where every tensor computed at run time lives.
//!
//! Planning happens once, when the interpreter is built:
//! 1. [`lifetimes`]: the steps (positions in the execution plan) during which each tensor
//!    must hold its value, from the step that writes it to the last step that reads it.
//!    Graph inputs live from step 0, graph outputs to the end (`steps`), constants not at all.
//! 2. [`plan`]: a byte range for each tensor with a lifetime. Tensors whose lifetimes
//!    intersect never overlap in memory; the others may share it.
//!
//! At run time, [`Arena`] holds the bytes and [`carve`] splits them into one operator's
//! disjoint operand slices.

use std::ops::Range;

use super::error::OpError;
use super::graph::Node;

/// Alignment of every tensor placed in the arena, in bytes (and of the arena itself: a
/// 64-byte vector load at a tensor's start then stays within one cache line).
pub(super) const ARENA_ALIGN: usize = 64;

/// `v` rounded up to a multiple of [`ARENA_ALIGN`].
pub(super) fn align_up(v: usize) -> usize {
    v.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

/// The steps during which a tensor holds its value, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Lifetime {
    pub first: usize,
    pub last: usize,
}

impl Lifetime {
    /// Whether the two tensors are alive at a common step.
    pub fn intersects(&self, other: &Lifetime) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Lifetimes of the `num_tensors` tensors of a graph that runs `steps` in this order.
/// `None`: the tensor needs no arena storage (a constant, or never used by a step nor a
/// graph input). Graph inputs live from step 0, graph outputs until `steps.len()` (after
/// the last step). With `keep_all`, every tensor that has a lifetime lives from 0 to
/// `steps.len()`, so that no two share memory (intermediates stay readable after a run).
pub(super) fn lifetimes(
    num_tensors: usize,
    graph_inputs: &[usize],
    graph_outputs: &[usize],
    steps: &[&Node],
    is_const: impl Fn(usize) -> bool,
    keep_all: bool,
) -> Vec<Option<Lifetime>> {
    let nsteps = steps.len();
    let mut first = vec![usize::MAX; num_tensors];
    let mut last = vec![0usize; num_tensors];
    for &i in graph_inputs {
        first[i] = 0;
    }
    for (s, node) in steps.iter().enumerate() {
        for &t in node.inputs.iter().flatten() {
            if !is_const(t) {
                last[t] = last[t].max(s);
            }
        }
        for &t in &node.outputs {
            first[t] = first[t].min(s);
            last[t] = last[t].max(s);
        }
    }
    for &o in graph_outputs {
        last[o] = nsteps;
    }
    (0..num_tensors)
        .map(|t| {
            if first[t] == usize::MAX || is_const(t) {
                None
            } else if keep_all {
                Some(Lifetime {
                    first: 0,
                    last: nsteps,
                })
            } else {
                Some(Lifetime {
                    first: first[t],
                    last: last[t],
                })
            }
        })
        .collect()
}

/// Where every tensor lives in the arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// Byte range of each tensor with a lifetime (`None` for the others).
    pub place: Vec<Option<Range<usize>>>,
    /// Bytes the arena needs.
    pub total: usize,
}

/// Place tensors of `sizes[t]` bytes alive during `lifetimes[t]`: greedily, largest first
/// (ties in index order), each at the lowest [`ARENA_ALIGN`]-aligned offset that does not
/// overlap a tensor already placed whose lifetime intersects. Every tensor takes at least
/// one aligned block, even an empty one.
pub(super) fn plan(sizes: &[usize], lifetimes: &[Option<Lifetime>]) -> Plan {
    let n = sizes.len().min(lifetimes.len());
    let mut order: Vec<usize> = (0..n).filter(|&t| lifetimes[t].is_some()).collect();
    order.sort_by_key(|&t| std::cmp::Reverse(sizes[t]));
    let mut place: Vec<Option<Range<usize>>> = vec![None; sizes.len()];
    let mut placed: Vec<(Lifetime, Range<usize>)> = Vec::new();
    let mut total = 0usize;
    for &t in &order {
        let Some(life) = lifetimes[t] else {
            continue;
        };
        let size = align_up(sizes[t].max(1));
        let mut busy: Vec<Range<usize>> = placed
            .iter()
            .filter(|(l, _)| l.intersects(&life))
            .map(|(_, r)| r.clone())
            .collect();
        busy.sort_by_key(|r| r.start);
        let mut off = 0usize;
        for r in &busy {
            if off + size <= r.start {
                break;
            }
            off = off.max(align_up(r.end));
        }
        let r = off..off + sizes[t];
        place[t] = Some(r.clone());
        total = total.max(off + size);
        placed.push((life, r));
    }
    Plan { place, total }
}

/// The activation memory: `len` bytes starting at an [`ARENA_ALIGN`]-aligned address
/// inside an 8-byte-aligned allocation.
#[derive(Debug)]
pub(super) struct Arena {
    words: Vec<u64>,
    /// First byte of the aligned region.
    start: usize,
    len: usize,
}

impl Arena {
    pub fn new(len: usize) -> Arena {
        let words = vec![0u64; (len + ARENA_ALIGN).div_ceil(8)];
        let start = (words.as_ptr() as usize).wrapping_neg() % ARENA_ALIGN;
        Arena { words, start, len }
    }

    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[self.start..][..self.len]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[self.start..][..self.len]
    }
}

/// Split `arena` into the disjoint operand slices of one operator.
/// `ranges` holds (byte range, k) with k >= 0 for input k and k < 0 for output -k-1.
/// Inputs that name the same tensor share one slice. Overlap between distinct
/// ranges is a planning bug and is reported, never undefined behaviour.
pub(super) fn carve<'a>(
    arena: &'a mut [u8],
    ranges: &mut [(Range<usize>, i32)],
    ins: &mut [Option<&'a [u8]>],
    outs: &mut [Option<&'a mut [u8]>],
) -> std::result::Result<(), OpError> {
    ranges.sort_by_key(|(r, k)| (r.start, r.end, *k));
    let mut rest: &'a mut [u8] = arena;
    let mut consumed = 0usize;
    let mut prev: Option<(Range<usize>, &'a [u8])> = None;
    for (r, k) in ranges.iter() {
        if let Some((pr, ps)) = &prev {
            if pr == r && *k >= 0 {
                ins[*k as usize] = Some(*ps);
                continue;
            }
        }
        if r.start < consumed {
            return Err("operands overlap in the arena".into());
        }
        let tail = std::mem::take(&mut rest);
        let (_, tail) = tail.split_at_mut(r.start - consumed);
        if r.len() > tail.len() {
            return Err("operand beyond the arena".into());
        }
        let (piece, tail) = tail.split_at_mut(r.len());
        rest = tail;
        consumed = r.end;
        if *k >= 0 {
            let shared: &'a [u8] = piece;
            ins[*k as usize] = Some(shared);
            prev = Some((r.clone(), shared));
        } else {
            outs[(-*k - 1) as usize] = Some(piece);
            prev = None;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::graph::Op;

    fn life(first: usize, last: usize) -> Option<Lifetime> {
        Some(Lifetime { first, last })
    }

    fn node(inputs: &[usize], outputs: &[usize]) -> Node {
        Node {
            op: Op::Relu,
            inputs: inputs.iter().map(|&t| Some(t)).collect(),
            outputs: outputs.to_vec(),
        }
    }

    fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
        a.start < b.end && b.start < a.end
    }

    /// Every pair of tensors alive at a common step lies in disjoint bytes, every tensor
    /// is aligned, has its size and lies within `total`.
    fn check_plan(sizes: &[usize], lives: &[Option<Lifetime>], p: &Plan) {
        for t in 0..sizes.len() {
            let Some(r) = &p.place[t] else {
                assert!(lives[t].is_none(), "tensor {t} has a lifetime but no place");
                continue;
            };
            assert!(lives[t].is_some(), "tensor {t} has no lifetime but a place");
            assert_eq!(r.start % ARENA_ALIGN, 0, "tensor {t} at {r:?}");
            assert_eq!(r.len(), sizes[t]);
            assert!(r.end <= p.total, "tensor {t} at {r:?} beyond {}", p.total);
            for u in 0..t {
                let (Some(lt), Some(lu)) = (lives[t], lives[u]) else {
                    continue;
                };
                let ru = p.place[u].as_ref().unwrap();
                if lt.intersects(&lu) {
                    assert!(
                        !overlaps(r, ru) && r.start != ru.start,
                        "tensors {u} {ru:?} and {t} {r:?} are alive together"
                    );
                }
            }
        }
    }

    #[test]
    fn disjoint_lifetimes_share_memory() {
        let sizes = [1000, 600];
        let lives = [life(0, 1), life(2, 3)];
        let p = plan(&sizes, &lives);
        assert_eq!(p.place, vec![Some(0..1000), Some(0..600)]);
        assert_eq!(p.total, 1024);
    }

    #[test]
    fn intersecting_lifetimes_do_not_share() {
        let sizes = [1000, 600];
        let lives = [life(0, 2), life(2, 3)];
        let p = plan(&sizes, &lives);
        assert_eq!(p.place, vec![Some(0..1000), Some(1024..1624)]);
        assert_eq!(p.total, 1024 + 640);
        check_plan(&sizes, &lives, &p);
    }

    #[test]
    fn lifetimes_include_both_ends() {
        let a = Lifetime { first: 0, last: 1 };
        assert!(a.intersects(&Lifetime { first: 1, last: 2 }));
        assert!(Lifetime { first: 1, last: 2 }.intersects(&a));
        assert!(a.intersects(&Lifetime { first: 0, last: 0 }));
        assert!(!a.intersects(&Lifetime { first: 2, last: 5 }));
        assert!(!Lifetime { first: 2, last: 5 }.intersects(&a));
    }

    #[test]
    fn offsets_are_aligned_and_empty_tensors_take_a_block() {
        let sizes = [1, 65, 0, 100];
        let lives = [life(0, 3); 4];
        let p = plan(&sizes, &lives);
        // Largest first: 100 (128 bytes), 65 (128), 1 (64), 0 (64).
        assert_eq!(
            p.place,
            vec![Some(256..257), Some(128..193), Some(320..320), Some(0..100)]
        );
        assert_eq!(p.total, 384);
        check_plan(&sizes, &lives, &p);
    }

    #[test]
    fn a_tensor_fills_a_gap_it_fits_in() {
        // 2 and 0 are placed first (larger); 1 lives with both and goes after them; 3 lives
        // with 0 only and takes the bytes of 2 (not written yet at step 0).
        let sizes = [128, 64, 256, 64];
        let lives = [life(0, 1), life(1, 2), life(1, 3), life(0, 0)];
        let p = plan(&sizes, &lives);
        assert_eq!(p.place[2], Some(0..256));
        assert_eq!(p.place[0], Some(256..384));
        assert_eq!(p.place[1], Some(384..448));
        assert_eq!(p.place[3], Some(0..64), "3 is dead once 2 is written");
        assert_eq!(p.total, 448);
        check_plan(&sizes, &lives, &p);
    }

    #[test]
    fn chain_total_is_the_largest_pair() {
        // a -> b -> c: a and b are alive together at step 1, b and c at step 2, a and c
        // never: c reuses a's bytes.
        let sizes = [100, 200, 50];
        let lives = [life(0, 1), life(1, 2), life(2, 3)];
        let p = plan(&sizes, &lives);
        assert_eq!(p.place, vec![Some(256..356), Some(0..200), Some(256..306)]);
        assert_eq!(p.total, 384);
        check_plan(&sizes, &lives, &p);
    }

    #[test]
    fn tensors_without_lifetime_get_no_place() {
        let sizes = [64, 64, 64];
        let lives = [None, life(0, 0), None];
        let p = plan(&sizes, &lives);
        assert_eq!(p.place, vec![None, Some(0..64), None]);
        assert_eq!(p.total, 64);
        let p = plan(&sizes, &[None, None, None]);
        assert_eq!(p.total, 0);
    }

    #[test]
    fn random_plans_never_overlap_live_tensors() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: usize| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % m as u64) as usize
        };
        for _ in 0..200 {
            let n = 1 + next(24);
            let sizes: Vec<usize> = (0..n).map(|_| next(5000)).collect();
            let lives: Vec<Option<Lifetime>> = (0..n)
                .map(|_| {
                    if next(8) == 0 {
                        return None;
                    }
                    let first = next(10);
                    life(first, first + next(4))
                })
                .collect();
            let p = plan(&sizes, &lives);
            check_plan(&sizes, &lives, &p);
            let sum: usize = (0..n)
                .filter(|&t| lives[t].is_some())
                .map(|t| align_up(sizes[t].max(1)))
                .sum();
            assert!(p.total <= sum);
        }
    }

    #[test]
    fn lifetimes_of_a_small_graph() {
        // t0 (input) -> [0] -> t2 -> [1] -> t3 (output); t1 constant weights of [0];
        // t4 produced by [0] and read by [2]; [2] -> t5 (output). t6 unused.
        let steps = [
            node(&[0, 1], &[2, 4]),
            node(&[2], &[3]),
            node(&[4, 1], &[5]),
        ];
        let steps: Vec<&Node> = steps.iter().collect();
        let lives = lifetimes(7, &[0], &[3, 5], &steps, |t| t == 1, false);
        assert_eq!(
            lives,
            vec![
                life(0, 0),
                None,
                life(0, 1),
                life(1, 3),
                life(0, 2),
                life(2, 3),
                None
            ]
        );
        // Graph outputs stay alive to the end: t3 (written at step 1) is not overwritten
        // by t5 (step 2), though no step reads t3 afterwards.
        let sizes = [64; 7];
        let p = plan(&sizes, &lives);
        check_plan(&sizes, &lives, &p);
        assert_ne!(p.place[3], p.place[5]);
        // The input is dead after step 0: t3 may take its bytes, t2 and t4 may not.
        assert_ne!(p.place[0], p.place[2]);
        assert_ne!(p.place[0], p.place[4]);
    }

    #[test]
    fn graph_inputs_live_from_the_start() {
        // The input is read only by the last step: alive (and not shared) throughout.
        let steps = [node(&[1], &[2]), node(&[2, 0], &[3])];
        let steps: Vec<&Node> = steps.iter().collect();
        let lives = lifetimes(4, &[0, 1], &[3], &steps, |_| false, false);
        assert_eq!(lives[0], life(0, 1));
        assert_eq!(lives[1], life(0, 0));
        let p = plan(&[64; 4], &lives);
        assert_ne!(p.place[0], p.place[2]);
        assert_ne!(p.place[0], p.place[3]);
    }

    #[test]
    fn keep_all_gives_every_tensor_its_own_bytes() {
        let steps = [node(&[0], &[1]), node(&[1], &[2]), node(&[2], &[3])];
        let steps: Vec<&Node> = steps.iter().collect();
        let lives = lifetimes(5, &[0], &[3], &steps, |t| t == 4, true);
        assert_eq!(
            lives,
            vec![life(0, 3), life(0, 3), life(0, 3), life(0, 3), None]
        );
        let p = plan(&[100; 5], &lives);
        assert_eq!(p.total, 4 * 128);
        let without = plan(
            &[100; 5],
            &lifetimes(5, &[0], &[3], &steps, |t| t == 4, false),
        );
        assert!(without.total < p.total);
    }

    #[test]
    fn arena_is_aligned() {
        for len in [0, 1, 100, 4096] {
            let mut a = Arena::new(len);
            assert_eq!(a.bytes().len(), len);
            assert_eq!(a.bytes().as_ptr() as usize % ARENA_ALIGN, 0);
            assert_eq!(a.bytes_mut().len(), len);
        }
    }

    #[test]
    fn carve_splits_and_shares() {
        let mut arena: Vec<u8> = (0..=255).collect();
        // Input 0 and input 2 name the same tensor; output 0 after them.
        let mut ranges = vec![(128..192, -1), (0..64, 2), (0..64, 0), (64..96, 1)];
        let mut ins = [None; 3];
        let mut outs = [None];
        carve(&mut arena, &mut ranges, &mut ins, &mut outs).unwrap();
        assert_eq!(ins[0].unwrap()[0], 0);
        assert_eq!(ins[2].unwrap().len(), 64);
        assert_eq!(ins[1].unwrap()[0], 64);
        let out = outs[0].take().unwrap();
        assert_eq!((out[0], out.len()), (128, 64));
    }

    #[test]
    fn carve_reports_overlap_and_overflow() {
        let mut arena = vec![0u8; 256];
        let mut ranges = vec![(0..64, 0), (32..96, -1)];
        let mut ins = [None];
        let mut outs = [None];
        let e = carve(&mut arena, &mut ranges, &mut ins, &mut outs).unwrap_err();
        assert_eq!(e.0, "operands overlap in the arena");
        let mut ranges = vec![(0..64, 0), (200..300, -1)];
        let mut ins = [None];
        let mut outs = [None];
        let e = carve(&mut arena, &mut ranges, &mut ins, &mut outs).unwrap_err();
        assert_eq!(e.0, "operand beyond the arena");
        // An output that names the same bytes as an input is an overlap too.
        let mut ranges = vec![(0..64, 0), (0..64, -1)];
        let mut ins = [None];
        let mut outs = [None];
        assert!(carve(&mut arena, &mut ranges, &mut ins, &mut outs).is_err());
    }
}
