use super::*;

const MIN: Duration = Duration::from_secs(60);

fn cand(id: u64, at: Instant) -> ChokeCandidate {
    ChokeCandidate {
        peer: PeerKey(id),
        interested: true,
        snubbed: false,
        download_rate: 0.0,
        upload_rate: 0.0,
        connected_at: at,
        unchoked: false,
    }
}

/// `n` interested, old (10 min) peers with download rate = 1000 * id.
fn old_peers(n: u64, now: Instant) -> Vec<ChokeCandidate> {
    (0..n)
        .map(|i| {
            let mut c = cand(i, now - 10 * MIN);
            c.download_rate = 1000.0 * i as f64;
            c
        })
        .collect()
}

fn keys(ids: &[u64]) -> Vec<PeerKey> {
    ids.iter().map(|&i| PeerKey(i)).collect()
}

/// Apply a decision to the candidates, as the controller would.
fn apply(peers: &mut [ChokeCandidate], unchoked: &[PeerKey]) {
    for c in peers {
        c.unchoked = unchoked.contains(&c.peer);
    }
}

fn regular(ch: &Choker, set: &[PeerKey]) -> Vec<PeerKey> {
    set.iter()
        .copied()
        .filter(|p| Some(*p) != ch.optimistic())
        .collect()
}

#[test]
fn slots_follow_the_upload_limit_like_mainline() {
    assert_eq!(slots_for_rate(None), 7);
    assert_eq!(slots_for_rate(Some(0)), 7);
    assert_eq!(slots_for_rate(Some(5 * 1024)), 2);
    assert_eq!(slots_for_rate(Some(10 * 1024)), 3);
    assert_eq!(slots_for_rate(Some(20 * 1024)), 4);
    assert_eq!(slots_for_rate(Some(100 * 1024)), 7); // sqrt(60) = 7.7
    assert_eq!(slots_for_rate(Some(1000 * 1024)), 24); // sqrt(600) = 24.5
    assert_eq!(
        ChokerConfig::for_upload_limit(Some(10 * 1024)).upload_slots,
        3
    );
    assert_eq!(
        ChokerConfig::default(),
        ChokerConfig {
            upload_slots: 4,
            optimistic_every: 3
        }
    );
}

#[test]
fn leeching_unchokes_best_downloaders_plus_one_optimistic() {
    let now = Instant::now();
    let mut peers = old_peers(8, now);
    peers[7].interested = false; // best rate but not interested
    peers[6].snubbed = true; // second best but snubbed
    let mut ch = Choker::new(ChokerConfig::default(), 1);
    let set = ch.rechoke(now, false, &peers, true);
    assert_eq!(set.len(), 4);
    assert_eq!(regular(&ch, &set), keys(&[3, 4, 5]));
    let opt = ch.optimistic().unwrap();
    assert!(
        opt.0 <= 2 || opt.0 == 6,
        "optimistic {opt:?} must be an interested non-regular"
    );
    assert!(!set.contains(&PeerKey(7)));
}

#[test]
fn snubbed_and_uninterested_never_get_regular_slots() {
    let now = Instant::now();
    let mut peers = old_peers(8, now);
    peers[7].snubbed = true;
    peers[6].interested = false;
    for seed in 0..50 {
        let mut ch = Choker::new(ChokerConfig::default(), seed);
        for round in 0..6 {
            let set = ch.rechoke(
                now + round * 10 * Duration::from_secs(1),
                false,
                &peers,
                true,
            );
            assert_eq!(regular(&ch, &set), keys(&[3, 4, 5]), "seed {seed}");
            assert!(!set.contains(&PeerKey(6)));
            apply(&mut peers, &set);
        }
    }
}

#[test]
fn optimistic_rotates_every_third_round_only() {
    let t0 = Instant::now();
    let mut peers = old_peers(10, t0);
    let mut ch = Choker::new(
        ChokerConfig {
            upload_slots: 2,
            optimistic_every: 3,
        },
        7,
    );
    let mut history = Vec::new();
    for round in 0..12u32 {
        let now = t0 + Duration::from_secs(10) * round;
        let set = ch.rechoke(now, false, &peers, true);
        apply(&mut peers, &set);
        let opt = ch.optimistic().unwrap();
        assert_eq!(set, {
            let mut v = vec![PeerKey(9), opt];
            v.sort();
            v
        });
        // Extra non-round calls (interest changes elsewhere) keep it.
        assert_eq!(
            ch.rechoke(now + Duration::from_secs(1), false, &peers, false),
            set
        );
        assert_eq!(ch.optimistic(), Some(opt));
        history.push(opt);
    }
    for (i, w) in history.windows(2).enumerate() {
        let round = i + 1; // w[1] is the decision of round index `round`
        if round % 3 == 0 {
            assert_ne!(
                w[0], w[1],
                "rotation expected at round {round}: {history:?}"
            );
        } else {
            assert_eq!(
                w[0], w[1],
                "no rotation expected at round {round}: {history:?}"
            );
        }
    }
}

#[test]
fn optimistic_replaced_at_once_when_it_leaves_or_loses_interest() {
    let t0 = Instant::now();
    let mut peers = old_peers(6, t0);
    let mut ch = Choker::new(
        ChokerConfig {
            upload_slots: 2,
            optimistic_every: 3,
        },
        3,
    );
    let set = ch.rechoke(t0, false, &peers, true);
    apply(&mut peers, &set);
    let opt = ch.optimistic().unwrap();
    peers.retain(|c| c.peer != opt);
    let set = ch.rechoke(t0 + Duration::from_secs(1), false, &peers, false);
    let new = ch.optimistic().unwrap();
    assert_ne!(new, opt);
    assert!(set.contains(&new) && set.len() == 2);
    apply(&mut peers, &set);
    peers.iter_mut().find(|c| c.peer == new).unwrap().interested = false;
    let set = ch.rechoke(t0 + Duration::from_secs(2), false, &peers, false);
    assert!(!set.contains(&new));
    assert_eq!(set.len(), 2);
}

#[test]
fn new_connections_are_three_times_as_likely_to_be_optimistic() {
    let now = Instant::now();
    let mut peers = old_peers(10, now);
    peers[0].connected_at = now - Duration::from_secs(5); // new
    let trials = 3000;
    let mut new_hits = 0;
    let mut old_hits = 0; // peer 1, an old one
    for seed in 0..trials {
        let mut ch = Choker::new(
            ChokerConfig {
                upload_slots: 1,
                optimistic_every: 3,
            },
            seed,
        );
        let set = ch.rechoke(now, false, &peers, true);
        assert_eq!(set.len(), 1);
        new_hits += u32::from(set[0] == PeerKey(0));
        old_hits += u32::from(set[0] == PeerKey(1));
    }
    // Weights: 3 for the new peer, 1 for each of 9 old: 3/12 vs 1/12.
    let p_new = f64::from(new_hits) / trials as f64;
    let p_old = f64::from(old_hits) / trials as f64;
    assert!((p_new - 0.25).abs() < 0.04, "new {p_new}");
    assert!((p_old - 1.0 / 12.0).abs() < 0.03, "old {p_old}");
}

#[test]
fn few_peers_all_are_unchoked_interested_or_not() {
    let now = Instant::now();
    let mut peers = old_peers(3, now);
    peers[1].interested = false;
    peers[2].snubbed = true;
    for seeding in [false, true] {
        let mut ch = Choker::new(ChokerConfig::default(), 0);
        assert_eq!(ch.rechoke(now, seeding, &peers, true), keys(&[0, 1, 2]));
    }
    let mut ch = Choker::new(ChokerConfig::default(), 0);
    assert!(ch.rechoke(now, false, &[], true).is_empty());
    assert_eq!(ch.optimistic(), None);
}

#[test]
fn seeding_prefers_upload_rate_among_current_holders() {
    let now = Instant::now();
    let mut peers: Vec<_> = (0..6u64)
        .map(|i| {
            let mut c = cand(i, now - 10 * MIN);
            c.upload_rate = 1000.0 * i as f64;
            c.download_rate = 1e9 - 1000.0 * i as f64; // ignored while seeding
            c.unchoked = i < 5;
            c
        })
        .collect();
    peers[5].unchoked = false;
    let mut ch = Choker::new(ChokerConfig::default(), 5);
    let set = ch.rechoke(now, true, &peers, true);
    // The three unchoked peers with the best upload rate keep regular slots.
    assert_eq!(regular(&ch, &set), keys(&[2, 3, 4]));
    assert_eq!(set.len(), 4);
}

#[test]
fn seeding_round_robin_gives_every_interested_peer_a_turn() {
    let t0 = Instant::now();
    let mut peers: Vec<_> = (0..12u64)
        .map(|i| {
            let mut c = cand(i, t0 - 10 * MIN + Duration::from_secs(i));
            c.upload_rate = 1000.0 * i as f64;
            c
        })
        .collect();
    peers[11].interested = false;
    let mut ch = Choker::new(ChokerConfig::default(), 9);
    let mut turns = [0u32; 12];
    let mut streak = [0u32; 12];
    for round in 0..24u32 {
        let now = t0 + Duration::from_secs(10) * round;
        let set = ch.rechoke(now, true, &peers, true);
        assert_eq!(set.len(), 4, "round {round}");
        for c in &peers {
            let i = c.peer.0 as usize;
            if set.contains(&c.peer) {
                turns[i] += 1;
                streak[i] += 1;
                // Nobody holds a regular slot for long while others wait.
                assert!(
                    streak[i] <= 6,
                    "peer {i} unchoked {} rounds in a row",
                    streak[i]
                );
            } else {
                streak[i] = 0;
            }
        }
        apply(&mut peers, &set);
        // Upload rates follow who was served.
        for c in peers.iter_mut() {
            c.upload_rate = if c.unchoked { 50_000.0 } else { 0.0 };
        }
    }
    assert_eq!(turns[11], 0, "uninterested peer served");
    for (i, t) in turns.iter().enumerate().take(11) {
        assert!(*t >= 3, "peer {i} got {t} rounds: {turns:?}");
    }
}

#[test]
fn spare_slots_unchoke_idle_peers_after_every_interested_one() {
    let now = Instant::now();
    // 2 slots, 4 peers: one interested, three not (one already unchoked).
    let mut peers = old_peers(4, now);
    for c in &mut peers[1..] {
        c.interested = false;
    }
    peers[3].unchoked = true;
    let config = ChokerConfig {
        upload_slots: 2,
        optimistic_every: 3,
    };
    for seeding in [false, true] {
        let mut ch = Choker::new(config.clone(), 0);
        // The interested peer first; then the idle one we already unchoke.
        assert_eq!(ch.rechoke(now, seeding, &peers, true), keys(&[0, 3]));
    }
    // Interested peers take every slot: no idle unchokes.
    for c in &mut peers {
        c.interested = true;
    }
    let mut ch = Choker::new(config, 0);
    assert_eq!(ch.rechoke(now, true, &peers, true).len(), 2);
}

#[test]
fn an_idle_unchoke_holds_no_seeding_turn() {
    let t0 = Instant::now();
    // Peer 0 is interested and served; peer 1 idles in a spare slot for
    // several rounds, then turns interested.
    let mut peers = old_peers(2, t0);
    peers[0].upload_rate = 50_000.0;
    peers[1].interested = false;
    let mut ch = Choker::new(ChokerConfig::default(), 0);
    for round in 0..5u32 {
        let set = ch.rechoke(t0 + Duration::from_secs(10) * round, true, &peers, true);
        assert_eq!(set, keys(&[0, 1]));
        apply(&mut peers, &set);
    }
    peers[1].interested = true;
    let set = ch.rechoke(t0 + Duration::from_secs(45), true, &peers, false);
    assert_eq!(set, keys(&[0, 1]));
    // Its turn starts now; peer 0's, five rounds old, has expired.
    let order: Vec<PeerKey> = ch.seeding_order(&peers).iter().map(|c| c.peer).collect();
    assert_eq!(order, keys(&[1, 0]));
}
