//! Tests for `selector.rs`, including the measured comparison with pingora's own
//! `Weighted<RoundRobin>` (run with `--nocapture` to see the numbers).

use std::collections::BTreeSet;
use std::sync::Arc;

use pingora_load_balancing::selection::{BackendIter, BackendSelection, RoundRobin};
use pingora_load_balancing::Backend;

use super::selector::{SmoothBackends, SmoothWeighted};

fn picks(sel: &SmoothWeighted, n: usize, accept: impl Fn(usize) -> bool) -> Vec<usize> {
    (0..n).map(|_| sel.pick(&accept).expect("some target is accepted")).collect()
}

fn counts(seq: &[usize], n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for &i in seq {
        c[i] += 1;
    }
    c
}

/// Longest run of consecutive equal picks, per item.
fn longest_runs(seq: &[usize], n: usize) -> Vec<usize> {
    let mut best = vec![0; n];
    let mut run = 0;
    for (k, &i) in seq.iter().enumerate() {
        run = if k > 0 && seq[k - 1] == i { run + 1 } else { 1 };
        best[i] = best[i].max(run);
    }
    best
}

fn backends(weights: &[usize]) -> BTreeSet<Backend> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new_with_weight(&format!("127.0.0.1:{}", 1001 + i), w).unwrap())
        .collect()
}

fn index_of(b: &Backend) -> usize {
    b.as_inet().unwrap().port() as usize - 1001
}

#[test]
fn weights_three_to_one_split_400_picks_within_five_percent_and_interleave() {
    let sel = SmoothWeighted::new(&[3, 1]);
    let seq = picks(&sel, 400, |_| true);
    let c = counts(&seq, 2);
    assert!((280..=320).contains(&c[0]), "{c:?}");
    assert_eq!(c[0] + c[1], 400);
    let runs = longest_runs(&seq, 2);
    assert!(runs[0] <= 3 && runs[1] <= 1, "runs {runs:?}");
    assert_eq!(&seq[..4], &[0, 0, 1, 0], "smooth order, not A A A B");
}

#[test]
fn an_unavailable_target_shares_out_its_picks_in_the_others_weight_ratio() {
    let sel = SmoothWeighted::new(&[3, 2, 1]);
    let seq = picks(&sel, 400, |i| i != 1);
    let c = counts(&seq, 3);
    assert_eq!(c[1], 0);
    assert_eq!(c[0], 300, "{c:?}");
    assert_eq!(c[2], 100, "{c:?}");
}

#[test]
fn proportions_recover_after_a_target_comes_back() {
    let sel = SmoothWeighted::new(&[1, 1]);
    let _ = picks(&sel, 50, |i| i == 0);
    let c = counts(&picks(&sel, 100, |_| true), 2);
    assert_eq!(c, vec![50, 50]);
}

#[test]
fn nothing_accepted_and_zero_weights_pick_none() {
    let sel = SmoothWeighted::new(&[2, 0]);
    assert_eq!(sel.pick(|_| false), None);
    assert_eq!(sel.pick(|i| i == 1), None);
    assert_eq!(SmoothWeighted::new(&[]).pick(|_| true), None);
}

#[test]
fn concurrent_picks_keep_exact_proportions() {
    let sel = Arc::new(SmoothWeighted::new(&[3, 1]));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let sel = sel.clone();
            std::thread::spawn(move || picks(&sel, 10_000, |_| true))
        })
        .collect();
    let all: Vec<usize> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let c = counts(&all, 2);
    // Every add and subtract lands once, so over a multiple of the period the split is exact.
    assert_eq!(c, vec![30_000, 10_000]);
}

#[test]
fn backend_selection_yields_weighted_picks_then_weighted_fallbacks_without_repeats() {
    let set = backends(&[3, 1, 1]);
    let sel = Arc::new(SmoothBackends::build(&set));
    let mut it = sel.iter(b"");
    let mut seen = vec![];
    while let Some(b) = it.next() {
        seen.push(index_of(b));
    }
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2]);
}

/// The measurement behind `selector.rs`'s choice: pingora's `Weighted<RoundRobin>` picks in
/// runs, and its fallback ignores weights. Numbers are printed for the report.
#[test]
fn pingora_weighted_round_robin_picks_in_runs_where_smooth_interleaves() {
    // First picks, weights 3:1.
    let set = backends(&[3, 1]);
    let rr = Arc::new(RoundRobin::build(&set));
    let pingora_seq: Vec<usize> = (0..400).map(|_| index_of(rr.iter(b"").next().unwrap())).collect();
    let smooth = Arc::new(SmoothBackends::build(&set));
    let smooth_seq: Vec<usize> = (0..400).map(|_| index_of(smooth.iter(b"").next().unwrap())).collect();
    println!("3:1 first 12 picks: pingora {:?} smooth {:?}", &pingora_seq[..12], &smooth_seq[..12]);
    println!(
        "3:1 over 400: pingora counts {:?} longest runs {:?}; smooth counts {:?} longest runs {:?}",
        counts(&pingora_seq, 2),
        longest_runs(&pingora_seq, 2),
        counts(&smooth_seq, 2),
        longest_runs(&smooth_seq, 2)
    );
    assert_eq!(counts(&pingora_seq, 2), vec![300, 100]);
    assert_eq!(longest_runs(&pingora_seq, 2), vec![3, 1]);
    assert_eq!(longest_runs(&smooth_seq, 2), vec![3, 1]);

    // Weights 10:1: pingora sends ten in a row; smooth spreads the one.
    let set = backends(&[10, 1]);
    let rr = Arc::new(RoundRobin::build(&set));
    let p: Vec<usize> = (0..1100).map(|_| index_of(rr.iter(b"").next().unwrap())).collect();
    let sm = Arc::new(SmoothBackends::build(&set));
    let s: Vec<usize> = (0..1100).map(|_| index_of(sm.iter(b"").next().unwrap())).collect();
    println!(
        "10:1 over 1100: pingora first 22 {:?} runs {:?}; smooth first 22 {:?} runs {:?}",
        &p[..22],
        longest_runs(&p, 2),
        &s[..22],
        longest_runs(&s, 2)
    );

    // Weights 5:3:2: pingora sends every target's share in one run; smooth spreads them.
    let set = backends(&[5, 3, 2]);
    let rr = Arc::new(RoundRobin::build(&set));
    let p: Vec<usize> = (0..1000).map(|_| index_of(rr.iter(b"").next().unwrap())).collect();
    let sm = Arc::new(SmoothBackends::build(&set));
    let s: Vec<usize> = (0..1000).map(|_| index_of(sm.iter(b"").next().unwrap())).collect();
    println!(
        "5:3:2 over 1000: pingora first 10 {:?} counts {:?} runs {:?}; smooth first 10 {:?} counts {:?} runs {:?}",
        &p[..10],
        counts(&p, 3),
        longest_runs(&p, 3),
        &s[..10],
        counts(&s, 3),
        longest_runs(&s, 3)
    );
    assert_eq!(longest_runs(&p, 3), vec![5, 3, 2]);
    assert_eq!(counts(&s, 3), vec![500, 300, 200]);
    assert!(longest_runs(&s, 3).iter().all(|&r| r <= 2), "smooth runs {:?}", longest_runs(&s, 3));

    // Fallback: weights 2:1:1 (A, B, C) with B unavailable. Ideal split of A:C is 2:1.
    let set = backends(&[2, 1, 1]);
    let rr = Arc::new(RoundRobin::build(&set));
    let sm = Arc::new(SmoothBackends::build(&set));
    let first_ok = |sel: &dyn Fn() -> Vec<usize>| sel().into_iter().find(|&i| i != 1).unwrap();
    let mut pc = [0; 3];
    let mut sc = [0; 3];
    for _ in 0..4000 {
        pc[first_ok(&|| {
            let mut it = rr.iter(b"");
            (0..8).filter_map(|_| it.next().map(index_of)).collect()
        })] += 1;
        sc[first_ok(&|| {
            let mut it = sm.iter(b"");
            (0..3).filter_map(|_| it.next().map(index_of)).collect()
        })] += 1;
    }
    println!(
        "2:1:1 with B down over 4000: pingora A,C = {}, {}; smooth A,C = {}, {}",
        pc[0], pc[2], sc[0], sc[2]
    );
    assert_eq!((sc[0], sc[2]), (2667, 1333), "smooth keeps 2:1 among the rest (within rounding)");
}
