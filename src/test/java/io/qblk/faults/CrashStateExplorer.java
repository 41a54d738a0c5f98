package io.qblk.faults;

import io.qblk.qcow2.CheckReport;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.qcow2.RepairMode;
import io.qblk.testing.IoEvent;
import io.qblk.testing.MemoryBackend;
import io.qblk.testing.RecordingBackend;
import java.io.IOException;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;

/**
 * Power-loss crash states of recorded workloads, CrashMonkey/ACE style, and their checks.
 *
 * <p>For each barrier (datasync) of a workload's log, a crash just before the barrier completes
 * leaves on disk everything that completed before the previous barrier was submitted, plus any
 * subset of the writes in flight since then, each possibly torn at 512-byte granularity. Every
 * such state (exhaustively when the epoch is small, else sampled with a seeded random) is
 * materialised in memory and checked:
 * <ol>
 * <li>the engine opens it;</li>
 * <li>the engine's check finds no corruption (leaks are allowed); on a sample, so does
 *     {@code qemu-img check} (exit 0 or 3, never 1 or 2); after {@code check(ALL)} it is clean;</li>
 * <li>every guest sector reads a value the crash model allows ({@link ExpectedContents}).</li>
 * </ol>
 */
final class CrashStateExplorer {
    private final long seed;
    private final long budget;
    private final List<Workload> workloads;
    private final int qemuEvery;
    private final PrintStream out;
    private final boolean qemu;

    long explored, corrupt, lost, foreign, leaksAfterRepair, qemuChecked, torn, exhaustiveEpochs, sampledEpochs;
    /** Snapshots missing, present after a completed delete, or not reading what they held when taken. */
    long snapshotsBroken;
    /**
     * States of a crash inside a snapshot create/delete whose only corruption is OFLAG_COPIED out of
     * step with the refcounts (docs/ordering.md, S6: refcounts and flags live in different clusters).
     * Allowed, and check(ALL) must then repair them.
     */
    long copiedFlagDrift, snapshotReads;
    /**
     * States with the dirty bit set (a lazy-refcounts image between its first change and its clean
     * close, docs/ordering.md L1-L3): opening them repairs the refcounts first. Of those, how many
     * qemu-img also judged: {@code check} reports refcount errors only, {@code check -r all} repairs all.
     */
    long dirtyStates, qemuDirtyChecked;
    /** "snapshot-resize" states that have the applied snapshot's virtual size (the other ones have the size the run started at). */
    long resizedStates;
    private int reported;

    CrashStateExplorer(long seed, long budget, List<Workload> workloads, int qemuEvery, PrintStream out) {
        this.seed = seed;
        this.budget = budget;
        this.workloads = workloads;
        this.qemuEvery = qemuEvery;
        this.out = out;
        this.qemu = qemuEvery > 0 && QemuImgCheck.available();
    }

    static List<Workload> workloads(String filter, long seed) {
        List<Workload> ws = new ArrayList<>();
        for (String k : concat(Workload.KINDS, Workload.REPAIR_KINDS))
            for (int cs : Workload.clusterSizes(k)) {
                if (!Workload.applies(k, cs)) continue;
                Workload w = Workload.generate(k, cs, seed);
                if (filter == null || filter.equals("all") || filter.equals(k) || filter.equals(w.name()) || filter.equals(Workload.sizeName(cs))) ws.add(w);
            }
        if (ws.isEmpty()) throw new IllegalArgumentException("no workload matches " + filter + " (kinds " + concat(Workload.KINDS, Workload.REPAIR_KINDS) + ", or kind-clustersize like mixed-64k)");
        return ws;
    }

    private static List<String> concat(List<String> a, List<String> b) {
        List<String> all = new ArrayList<>(a);
        all.addAll(b);
        return all;
    }

    private final java.util.IdentityHashMap<Recorded, ExpectedContents> expectations = new java.util.IdentityHashMap<>();

    /**
     * The expectations of a run (the current one's kept, as for {@link #snapshotExpect}): a
     * "snapshot-resize" base image holds data, read here, where the other kinds start from zeroes.
     */
    ExpectedContents expectations(Recorded r) throws IOException {
        ExpectedContents e = expectations.get(r);
        if (e != null) return e;
        expectations.clear();
        Workload w = r.workload();
        long[] initial = null;
        if (w.resizesOnApply()) {
            initial = new long[(int) (w.virtualSize() / 512)];
            Arrays.fill(initial, SectorTags.ZERO);
            try (Qcow2Image img = Qcow2Image.open(new MemoryBackend(r.base()), OpenOptions.defaults().withReadOnly(true)); Arena a = Arena.ofConfined()) {
                MemorySegment d = a.allocate(img.virtualSize(), 4096);
                img.read(0, d);
                for (int s = 0; s < img.virtualSize() / 512; s++) initial[s] = SectorTags.decode(d, 512L * s);
            }
        }
        e = new ExpectedContents(r.ops(), w.virtualSize(), w.backed(), initial);
        expectations.put(r, e);
        return e;
    }

    /**
     * The virtual sizes a crash state may have: the start size, and for "snapshot-resize" the
     * snapshot's once its apply began (only that one once the apply returned).
     */
    private static List<Long> allowedSizes(Recorded r, CrashPoint p) {
        Workload w = r.workload();
        for (GuestOp op : r.ops()) {
            if (op.type() != GuestOp.Type.SNAPSHOT_APPLY || op.offset() >= 0 || op.startTick() >= p.crashTick()) continue;
            if (op.ok() && op.endTick() < p.crashTick()) return List.of(w.snapshotSize());
            return List.of(w.startSize(), w.snapshotSize());
        }
        return List.of(w.startSize());
    }

    private static double weight(Workload w) {
        if (w.kind().equals("pages")) return 0.5; // a 16 or 32 MiB disk read back per state
        return w.clusterSize() >= (1 << 20) ? 0.25 : 1.0;
    }

    String summary() {
        return "crash-states: explored=" + explored + " corrupt=" + corrupt + " lost=" + lost + " foreign=" + foreign
                + " leaks-after-repair=" + leaksAfterRepair + " snapshots-broken=" + snapshotsBroken;
    }

    /**
     * A workload's run: the image it started from, the backend log and the guest ops;
     * {@code damagedCorruptions} > 0 when the run is a repair of a damaged image (the base has that
     * many corruptions, and a crash state may keep exactly those until it is repaired);
     * {@code tailCommits}: write-through commits that skipped phase A's sync (docs/ordering.md R17).
     */
    record Recorded(Workload workload, byte[] base, List<IoEvent> log, List<GuestOp> ops, long damagedCorruptions, long tailCommits) {
        Recorded(Workload workload, byte[] base, List<IoEvent> log, List<GuestOp> ops) {
            this(workload, base, log, ops, 0, 0);
        }
    }

    static Recorded record(Workload w) throws IOException {
        if (w.kind().equals("rebuild")) return recordRebuild(w);
        if (w.kind().equals("refcount-width")) return recordWidthChange(w);
        byte[] base = w.baseImage();
        MemoryBackend mem = new MemoryBackend(base);
        RecordingBackend rec = new RecordingBackend(mem);
        if (w.kind().equals("planned")) rec.offerPlainFd(); // W2: planned writes, transferred through the plan's backend
        Qcow2Image img = Qcow2Image.open(rec, w.openOptions());
        List<GuestOp> ops = new ArrayList<>(w.run(img, rec::clock, false, null));
        for (GuestOp op : ops) if (!op.ok()) throw new IOException("workload " + w.name() + ": " + op + " failed on a healthy backend");
        long start = rec.clock(), tailCommits = img.stats().tailCommits();
        img.close();
        ops.add(new GuestOp(ops.size(), GuestOp.Type.FLUSH, 0, 0, true, start, rec.clock())); // close flushes
        return new Recorded(w, base, rec.log(), List.copyOf(ops), 0, tailCommits);
    }

    /**
     * The rebuild of a broken refcount structure (docs/ordering.md R6): the guest ops run and are
     * flushed unrecorded, the refcount structure is damaged, then {@code check(ALL)} is recorded. A
     * barrier first, so that every crash point after it expects all the guest's data.
     */
    static Recorded recordRebuild(Workload w) throws IOException {
        Prepared p = prepare(w);
        damageRefcounts(p.mem(), w.refcountDamage());
        byte[] base = p.mem().snapshot();
        long damaged;
        try (Qcow2Image ro = Qcow2Image.open(new MemoryBackend(base), OpenOptions.defaults().withReadOnly(true))) {
            damaged = ro.check(RepairMode.NONE).corruptions();
        }
        if (damaged == 0) throw new IOException(w.name() + ": the damage left no corruption to repair");
        p.rec().recording(true);
        p.rec().datasync();
        try (Qcow2Image repair = Qcow2Image.open(p.rec(), w.openOptions())) {
            CheckReport c = repair.check(RepairMode.ALL);
            if (!c.clean()) throw new IOException(w.name() + ": the recorded repair did not end clean: " + c.messages());
        }
        return new Recorded(w, base, p.rec().log(), p.ops(), damaged, 0);
    }

    /**
     * The change of the refcount width (amend refcount_bits, docs/ordering.md R15): the guest ops
     * (with internal snapshots, so that refcounts above 1 are carried over) run and are flushed
     * unrecorded, then the change is recorded after a barrier; the final image must have the new
     * width and check clean.
     */
    static Recorded recordWidthChange(Workload w) throws IOException {
        Prepared p = prepare(w);
        byte[] base = p.mem().snapshot();
        p.rec().recording(true);
        p.rec().datasync();
        try (Qcow2Image img = Qcow2Image.open(p.rec(), w.openOptions())) {
            img.changeRefcountWidth(w.newRefcountBits());
        }
        try (Qcow2Image ro = Qcow2Image.open(new MemoryBackend(p.mem().snapshot()), OpenOptions.defaults().withReadOnly(true))) {
            int bits = ro.info().refcountBits();
            CheckReport c = ro.check(RepairMode.NONE);
            if (bits != w.newRefcountBits() || !c.clean())
                throw new IOException(w.name() + ": after the change: refcount bits " + bits + ", check " + c.messages());
        }
        return new Recorded(w, base, p.rec().log(), p.ops(), 0, 0);
    }

    /** A recorded repair or amend's starting point: the image made and its guest ops run and flushed, unrecorded. */
    private record Prepared(MemoryBackend mem, RecordingBackend rec, List<GuestOp> ops) {}

    private static Prepared prepare(Workload w) throws IOException {
        MemoryBackend mem = new MemoryBackend();
        Qcow2Image.create(mem, CreateOptions.defaults(w.virtualSize()).withClusterSize(w.clusterSize()).withRefcountBits(w.refcountBits()));
        RecordingBackend rec = new RecordingBackend(mem);
        rec.recording(false);
        Qcow2Image img = Qcow2Image.open(rec, w.openOptions());
        List<GuestOp> ops = new ArrayList<>(w.run(img, rec::clock, false, null));
        for (GuestOp op : ops) if (!op.ok()) throw new IOException("workload " + w.name() + ": " + op + " failed on a healthy backend");
        long start = rec.clock();
        img.close();
        ops.add(new GuestOp(ops.size(), GuestOp.Type.FLUSH, 0, 0, true, start, rec.clock()));
        return new Prepared(mem, rec, List.copyOf(ops));
    }

    /** Breaks the refcount structure of a closed image in {@code mem} the way {@code damage} says. */
    static void damageRefcounts(MemoryBackend mem, String damage) throws IOException {
        io.qblk.cli.ImagePatcher.Patch p = io.qblk.cli.ImagePatcher.refcountDamage(java.nio.ByteBuffer.wrap(mem.snapshot()), damage);
        mem.write(p.offset(), MemorySegment.ofArray(p.bytes()));
    }

    /**
     * The raw backing file of the "subcluster-backing" workloads: every sector tagged with
     * {@link Workload#BACKING_ID}, made once per size (the same bytes every time).
     */
    static synchronized java.nio.file.Path backingFile(long size) throws IOException {
        java.nio.file.Path f = QemuImgCheck.scratchDir().resolve("qblk-crash-backing-" + size + ".raw");
        if (java.nio.file.Files.exists(f) && java.nio.file.Files.size(f) == size) return f;
        java.nio.file.Path tmp = java.nio.file.Files.createTempFile(f.getParent(), "qblk-crash-backing-", ".tmp");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(size, 4096);
            SectorTags.fill(m, Workload.BACKING_ID, 0);
            java.nio.file.Files.write(tmp, m.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
        }
        java.nio.file.Files.move(tmp, f, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        return f;
    }

    /** One crash point: durable log prefix, in-flight writes, and the last completed guest flush. */
    record CrashPoint(int index, int durablePrefix, List<IoEvent> inflight, long crashTick, int flushId) {
        /** Number of states an exhaustive walk of the subsets needs (capped). */
        long exhaustiveCost() {
            return inflight.size() >= 40 ? Long.MAX_VALUE / 4 : 1L << inflight.size();
        }
    }

    /**
     * Test of the checker itself: a disk that acknowledges every datasync but persists only up to
     * the barrier before it. The guest's expectations stay those of the honest disk, so states of
     * this model must be reported as broken.
     */
    boolean lyingDisk;

    List<CrashPoint> crashPoints(Recorded r, ExpectedContents exp) {
        List<IoEvent> log = r.log();
        List<IoEvent> syncs = log.stream().filter(IoEvent::isSync).sorted(Comparator.comparingLong(IoEvent::submit)).toList();
        List<CrashPoint> points = new ArrayList<>();
        for (int k = 0; k <= syncs.size(); k++) {
            long crashTick = k < syncs.size() ? syncs.get(k).submit() : Long.MAX_VALUE;
            IoEvent prev = null;
            for (IoEvent s : syncs) if (s.complete() < crashTick && (prev == null || s.complete() > prev.complete())) prev = s;
            IoEvent persisted = prev;
            if (lyingDisk && prev != null) {
                IoEvent pp = null;
                for (IoEvent s : syncs) if (s.complete() < prev.submit() && (pp == null || s.complete() > pp.complete())) pp = s;
                persisted = pp;
            }
            int prefix = 0;
            if (persisted != null) while (prefix < log.size() && log.get(prefix).complete() < persisted.submit()) prefix++;
            List<IoEvent> inflight = new ArrayList<>();
            for (int i = prefix; i < log.size(); i++) {
                IoEvent e = log.get(i);
                if (!e.isSync() && e.submit() < crashTick) inflight.add(e);
            }
            // every guest flush that had returned before the crash: its writes must be there, whether or not
            // it issued a barrier of its own (a flush that skipped its sync wrongly, W2, shows up here)
            int flush = exp.lastReturnedFlush(crashTick);
            points.add(new CrashPoint(k, prefix, List.copyOf(inflight), crashTick, flush));
        }
        return points;
    }

    void run() throws IOException {
        long t0 = System.nanoTime();
        out.println("explorer: seed=" + seed + " budget=" + budget + " workloads=" + workloads.size()
                + (qemu ? " qemu-img check on every " + qemuEvery + "th state" : " (qemu-img check off)"));
        // 2 MiB clusters cost several times more per state (16 MiB guest disk, 2 MiB cluster copies): a quarter share
        double weights = 0;
        for (Workload w : workloads) weights += weight(w);
        long remaining = budget;
        for (int i = 0; i < workloads.size(); i++) {
            long share = Math.round(remaining * weight(workloads.get(i)) / weights);
            weights -= weight(workloads.get(i));
            long before = explored;
            explore(record(workloads.get(i)), share);
            remaining -= explored - before;
        }
        out.printf("explorer: %d torn, %d epochs exhaustive, %d sampled, %d states also checked by qemu-img check, %d snapshot reads verified, %d OFLAG_COPIED-only states inside snapshot ops (repaired), bitmaps consistent in %d and in use in %d, %d dirty (lazy refcounts; %d of them through qemu-img check and check -r all), %d at a snapshot's other size, %.1f s%n",
                torn, exhaustiveEpochs, sampledEpochs, qemuChecked, snapshotReads, copiedFlagDrift, bitmapsConsistent, bitmapsInUse, dirtyStates, qemuDirtyChecked, resizedStates, (System.nanoTime() - t0) / 1e9);
    }

    void explore(Recorded r, long share) throws IOException {
        Workload w = r.workload();
        ExpectedContents exp = expectations(r);
        List<CrashPoint> points = crashPoints(r, exp);
        // Allot the budget: small epochs exhaustively first, what they leave to the big ones.
        long[] allot = new long[points.size()];
        List<CrashPoint> byCost = new ArrayList<>(points);
        byCost.sort(Comparator.comparingLong(CrashPoint::exhaustiveCost));
        long left = share;
        for (int i = 0; i < byCost.size(); i++) {
            CrashPoint p = byCost.get(i);
            long s = Math.max(1, left / (byCost.size() - i));
            boolean tearable = p.inflight().stream().anyMatch(e -> e.sectors() > 1);
            long a = p.exhaustiveCost() <= s && !tearable ? p.exhaustiveCost() : s;
            allot[p.index()] = a;
            left -= a;
        }
        long t0 = System.nanoTime();
        long before = explored, writes = r.log().stream().filter(e -> !e.isSync()).count();
        long syncs = r.log().size() - writes;
        MemoryBackend durable = new MemoryBackend(r.base());
        int applied = 0;
        long bad0 = corrupt + lost + foreign + leaksAfterRepair + snapshotsBroken;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment disk = arena.allocate(w.virtualSize(), 4096);
            for (CrashPoint p : points) {
                for (; applied < p.durablePrefix(); applied++) r.log().get(applied).applyTo(durable);
                byte[] base = durable.snapshot();
                ExpectedContents.Expectation e = exp.at(p.flushId(), p.crashTick());
                Random rnd = new Random(seed * 1_000_003L + w.name().hashCode() * 7919L + p.index());
                List<IoEvent> fl = p.inflight();
                int n = fl.size();
                if (p.exhaustiveCost() <= allot[p.index()]) {
                    exhaustiveEpochs++;
                    for (long mask = 0; mask < (1L << n); mask++) checkState(r, p, base, e, disk, mask(mask, n), -1, null, rnd, "mask=" + Long.toBinaryString(mask));
                    for (long k = p.exhaustiveCost(); k < allot[p.index()]; k++) tornState(r, p, base, e, disk, rnd, k);
                } else {
                    sampledEpochs++;
                    for (long k = 0; k < allot[p.index()]; k++) {
                        if (rnd.nextInt(4) == 0) tornState(r, p, base, e, disk, rnd, k);
                        else {
                            boolean[] inc = new boolean[n];
                            for (int i = 0; i < n; i++) inc[i] = rnd.nextBoolean();
                            checkState(r, p, base, e, disk, inc, -1, null, rnd, "sample=" + k);
                        }
                    }
                }
            }
        }
        out.printf("  %-14s %5d writes %3d barriers %3d crash points %7d states %6.1f s%s%n", w.name(), writes, syncs, points.size(),
                explored - before, (System.nanoTime() - t0) / 1e9, corrupt + lost + foreign + leaksAfterRepair + snapshotsBroken > bad0 ? "  FAILURES" : "");
    }

    /**
     * A few states at every crash point after {@code fromTick} (for the I/O error injector): the
     * state with every in-flight write, then random subsets; the final crash point gets one state.
     */
    void exploreFrom(Recorded r, long fromTick, int statesPerPoint) throws IOException {
        Workload w = r.workload();
        ExpectedContents exp = expectations(r);
        List<CrashPoint> points = crashPoints(r, exp);
        MemoryBackend durable = new MemoryBackend(r.base());
        int applied = 0;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment disk = arena.allocate(w.virtualSize(), 4096);
            for (CrashPoint p : points) {
                if (p.crashTick() <= fromTick) continue;
                for (; applied < p.durablePrefix(); applied++) r.log().get(applied).applyTo(durable);
                byte[] base = durable.snapshot();
                ExpectedContents.Expectation e = exp.at(p.flushId(), p.crashTick());
                Random rnd = new Random(seed * 1_000_003L + w.name().hashCode() * 7919L + p.index());
                int n = p.inflight().size();
                boolean[] all = new boolean[n];
                Arrays.fill(all, true);
                checkState(r, p, base, e, disk, all, -1, null, rnd, "after-failure all-in-flight");
                int k = p.crashTick() == Long.MAX_VALUE || n == 0 ? 1 : statesPerPoint;
                for (int i = 1; i < k; i++) {
                    boolean[] inc = new boolean[n];
                    for (int j = 0; j < n; j++) inc[j] = rnd.nextBoolean();
                    checkState(r, p, base, e, disk, inc, -1, null, rnd, "after-failure sample=" + i);
                }
            }
        }
    }

    private static boolean[] mask(long m, int n) {
        boolean[] b = new boolean[n];
        for (int i = 0; i < n; i++) b[i] = ((m >>> i) & 1) != 0;
        return b;
    }

    /** A random subset in which one included multi-sector write persisted only in part. */
    private void tornState(Recorded r, CrashPoint p, byte[] base, ExpectedContents.Expectation e, MemorySegment disk, Random rnd, long k) throws IOException {
        List<IoEvent> fl = p.inflight();
        List<Integer> multi = new ArrayList<>();
        for (int i = 0; i < fl.size(); i++) if (fl.get(i).sectors() > 1) multi.add(i);
        boolean[] inc = new boolean[fl.size()];
        for (int i = 0; i < inc.length; i++) inc[i] = rnd.nextBoolean();
        if (multi.isEmpty()) {
            checkState(r, p, base, e, disk, inc, -1, null, rnd, "sample=" + k);
            return;
        }
        int t = multi.get(rnd.nextInt(multi.size()));
        int sectors = fl.get(t).sectors();
        boolean[] keep = new boolean[sectors];
        switch (rnd.nextInt(3)) {
            case 0 -> { int c = 1 + rnd.nextInt(sectors - 1); for (int i = 0; i < c; i++) keep[i] = true; }      // prefix
            case 1 -> { int c = 1 + rnd.nextInt(sectors - 1); for (int i = c; i < sectors; i++) keep[i] = true; } // suffix
            default -> { for (int i = 0; i < sectors; i++) keep[i] = rnd.nextBoolean(); }
        }
        inc[t] = true;
        torn++;
        checkState(r, p, base, e, disk, inc, t, keep, rnd, "torn=" + k + " write#" + t);
    }

    private void checkState(Recorded r, CrashPoint p, byte[] base, ExpectedContents.Expectation e, MemorySegment disk,
            boolean[] inc, int tornIdx, boolean[] keep, Random rnd, String what) throws IOException {
        explored++;
        MemoryBackend st = new MemoryBackend(base, 4096, "crash-state");
        List<IoEvent> fl = p.inflight();
        for (int i = 0; i < fl.size(); i++) {
            if (!inc[i]) continue;
            if (i == tornIdx) fl.get(i).applySectors(st, keep);
            else fl.get(i).applyTo(st);
        }
        String where = r.workload().name() + " seed=" + seed + " crash-point=" + p.index() + " " + what;
        boolean dirty = io.qblk.qcow2.Qcow2Header.dirtyBitSet(st);
        if (dirty) dirtyStates++;
        if (qemu && explored % qemuEvery == 0) {
            qemuChecked++;
            String[] o = new String[1];
            int rc = QemuImgCheck.check(st, o);
            if (dirty) {
                // L1-L3: a dirty state may hold stale refcounts, nothing else; qemu-img's repair fixes all of it
                qemuDirtyChecked++;
                String other = o[0].lines().filter(l -> l.startsWith("ERROR") && !STALE_REFCOUNT.matcher(l).find()).findFirst().orElse(null);
                if ((rc != 0 && rc != 2 && rc != 3) || other != null) {
                    corrupt++;
                    report(where, "dirty state: qemu-img check exit " + rc + (other != null ? ", not a refcount error: " + other : ": " + o[0].strip()));
                    return;
                }
                String[] repaired = new String[1];
                int rr = QemuImgCheck.check(st, repaired, "-r", "all");
                if (rr != 0) {
                    corrupt++;
                    report(where, "dirty state: qemu-img check -r all exit " + rr + ": " + repaired[0].strip());
                    return;
                }
            } else if (rc == 2 && inSnapshotOp(r, p) && onlyCopiedFlagErrors(o[0].lines().toList())) {
                // tolerated: see copiedFlagDrift
            } else if (rc != 0 && rc != 3 && !(rc == 2 && r.damagedCorruptions() > 0)) { // a repair's damage: checked below, unchanged
                corrupt++;
                report(where, "qemu-img check exit " + rc + ": " + o[0].strip());
                return;
            }
        }
        Qcow2Image img;
        try {
            img = Qcow2Image.open(st, OpenOptions.defaults());
        } catch (IOException ex) {
            corrupt++;
            report(where, "open failed: " + ex.getMessage());
            return;
        }
        try {
            CheckReport c = img.check(RepairMode.NONE);
            // A repair's crash state may still be the damaged image, never anything worse.
            boolean asDamaged = r.damagedCorruptions() > 0 && c.corruptions() == r.damagedCorruptions();
            if (c.corruptions() > 0 && c.checkErrors() == 0 && inSnapshotOp(r, p) && onlyCopiedFlagErrors(c.messages())) {
                copiedFlagDrift++;
            } else if ((c.corruptions() > 0 && !asDamaged) || c.checkErrors() > 0) {
                corrupt++;
                report(where, "check: " + c.corruptions() + " corruptions, " + c.checkErrors() + " errors: " + c.messages());
                return;
            }
            long size = img.virtualSize();
            if (!allowedSizes(r, p).contains(size)) {
                corrupt++;
                report(where, "virtual size " + size + ", expected one of " + allowedSizes(r, p));
                return;
            }
            if (size != r.workload().startSize()) resizedStates++;
            img.read(0, disk.asSlice(0, size));
            if (r.workload().kind().equals("bitmaps")) checkBitmaps(img, disk, where);
            ExpectedContents.Verdict v = e.verify(disk, size / 512);
            if (v != null) {
                if (v.lostSectors() > 0) lost++;
                if (v.foreignSectors() > 0) foreign++;
                report(where, v.lostSectors() + " lost, " + v.foreignSectors() + " foreign sectors (last completed flush: op #"
                        + e.flushId + "); first: " + v.first());
            }
            String snap = checkSnapshots(r, p, img, disk);
            if (snap != null) {
                snapshotsBroken++;
                report(where, snap);
            }
            // check(ALL) re-analyses after repairing: its report describes the repaired image
            CheckReport after = c.clean() ? c : img.check(RepairMode.ALL);
            CheckReport fixed = after;
            if (!after.clean()) {
                if (after.corruptions() > 0 || after.checkErrors() > 0) corrupt++;
                else leaksAfterRepair++;
                report(where, "after check(ALL): " + after.leaks() + " leaks, " + after.corruptions() + " corruptions: " + after.messages()
                        + " (repair said " + fixed.leaksFixed() + " leaks fixed)");
            }
        } catch (IOException ex) {
            corrupt++;
            report(where, "engine error: " + ex);
        } finally {
            try {
                img.close();
            } catch (IOException ex) {
                corrupt++;
                report(where, "close failed: " + ex.getMessage());
            }
        }
    }

    /**
     * The crash falls inside a snapshot create or delete (between its start and its return), or
     * after one that failed (an I/O error stopped it midway: its state is that of a crash inside it
     * until a repair).
     */
    private static boolean inSnapshotOp(Recorded r, CrashPoint p) {
        for (GuestOp op : r.ops())
            if (op.snapshotOp() && op.startTick() < p.crashTick() && (p.crashTick() <= op.endTick() || !op.ok())) return true;
        return false;
    }

    /**
     * What stale refcounts of a dirty image make qemu-img check report: a refcount that disagrees
     * with the references, or OFLAG_COPIED set on an entry whose cluster's refcount is still 0.
     */
    private static final java.util.regex.Pattern STALE_REFCOUNT =
            java.util.regex.Pattern.compile("^ERROR (cluster \\d+ refcount=\\d+ reference=\\d+$|OFLAG_COPIED (data|L2) cluster: .*refcount=0$)");

    private static boolean onlyCopiedFlagErrors(List<String> messages) {
        List<String> errors = messages.stream().filter(m -> m.contains("ERROR")).toList();
        return !errors.isEmpty() && errors.stream().allMatch(m -> m.contains("OFLAG_COPIED"));
    }

    private final java.util.IdentityHashMap<Recorded, java.util.Map<Integer, ExpectedContents.Expectation>> snapshotExpect = new java.util.IdentityHashMap<>();

    /**
     * Every snapshot whose create returned before the crash exists (unless its delete had begun),
     * none whose delete returned does, and each present one reads exactly what the guest disk held
     * when it was taken (create flushes first, so that content is known).
     */
    private String checkSnapshots(Recorded r, CrashPoint p, Qcow2Image img, MemorySegment disk) throws IOException {
        java.util.Set<String> present = new java.util.HashSet<>();
        for (io.qblk.qcow2.SnapshotInfo s : img.snapshots()) present.add(s.name());
        // Only the current run's expectations are kept: the I/O-error injector checks thousands of
        // runs, and holding each run (its whole write log) here exhausted the heap.
        if (!snapshotExpect.containsKey(r)) snapshotExpect.clear();
        java.util.Map<Integer, ExpectedContents.Expectation> exps = snapshotExpect.computeIfAbsent(r, k -> new java.util.HashMap<>());
        ExpectedContents all = expectations(r);
        for (GuestOp op : r.ops()) {
            if (op.type() != GuestOp.Type.SNAPSHOT || !op.ok()) continue;
            String name = "s" + op.id();
            boolean created = op.endTick() < p.crashTick();
            boolean deleteStarted = false, deleted = false;
            for (GuestOp d : r.ops()) {
                if (d.type() != GuestOp.Type.SNAPSHOT_DELETE || d.offset() != op.id()) continue;
                deleteStarted |= d.startTick() < p.crashTick();
                deleted |= d.ok() && d.endTick() < p.crashTick();
            }
            boolean has = present.contains(name);
            if (created && !deleteStarted && !has) return "snapshot " + name + " (op #" + op.id() + " returned before the crash) is missing";
            if (deleted && has) return "snapshot " + name + " is still there after its delete returned";
            if (!has) continue;
            ExpectedContents.Expectation e = exps.computeIfAbsent(op.id(), id -> all.at(id, op.startTick()));
            long size = img.snapshotSize(name);
            img.readSnapshot(name, 0, disk.asSlice(0, size));
            ExpectedContents.Verdict v = e.verify(disk, size / 512);
            snapshotReads++;
            if (v != null) return "snapshot " + name + ": " + v.lostSectors() + " lost, " + v.foreignSectors() + " foreign sectors; first: " + v.first();
        }
        return r.workload().resizesOnApply() ? checkBaseSnapshot(r, img, disk) : null;
    }

    /**
     * "snapshot-resize": snapshot "base" is never deleted; it keeps its size and reads what the
     * apply read from it just before it began.
     */
    private String checkBaseSnapshot(Recorded r, Qcow2Image img, MemorySegment disk) throws IOException {
        GuestOp apply = r.ops().stream().filter(o -> o.type() == GuestOp.Type.SNAPSHOT_APPLY && o.applied() != null).findFirst().orElse(null);
        if (img.snapshots().stream().noneMatch(s -> s.name().equals("base"))) return "snapshot base is missing";
        long size = img.snapshotSize("base");
        if (size != r.workload().snapshotSize()) return "snapshot base has virtual size " + size + ", not " + r.workload().snapshotSize();
        if (apply == null) return null;
        img.readSnapshot("base", 0, disk.asSlice(0, size));
        snapshotReads++;
        for (int s = 0; s < size / 512; s++) {
            long v = SectorTags.decode(disk, 512L * s);
            if (v != apply.applied()[s]) return "snapshot base: sector " + s + " reads " + v + ", not what the apply read (" + apply.applied()[s] + ")";
        }
        return null;
    }

    /**
     * A bitmap the crash state holds as consistent (not in use) must cover every guest sector that
     * changed since the base image (all zeros): rule B1 flags it in use before the first change,
     * and B4 clears that only after its bits are durable. An inconsistent one is not looked at.
     */
    long bitmapsConsistent, bitmapsInUse;

    private void checkBitmaps(Qcow2Image img, MemorySegment disk, String where) {
        for (String name : Workload.BITMAPS) {
            List<long[]> ext = img.dirtyExtents(name);
            if (ext == null) {
                bitmapsInUse++;
                continue;
            }
            bitmapsConsistent++;
            int next = 0;
            for (long s = 0; s < disk.byteSize(); s += 512) {
                while (next < ext.size() && ext.get(next)[0] + ext.get(next)[1] <= s) next++;
                boolean dirty = next < ext.size() && ext.get(next)[0] <= s;
                if (dirty) continue;
                if (disk.asSlice(s, 512).mismatch(ZERO_SECTOR) >= 0) {
                    corrupt++;
                    report(where, "bitmap " + name + " is consistent but misses the change at guest offset " + s);
                    return;
                }
            }
        }
    }

    private static final MemorySegment ZERO_SECTOR = MemorySegment.ofArray(new byte[512]);

    void report(String where, String msg) {
        if (reported++ < 20) out.println("  FAIL " + where + ": " + msg);
    }

    // ------------------------------------------------------------------ command line

    public static void main(String[] args) throws Exception {
        long states = 20_000, seed = System.nanoTime() & 0xffffffL;
        int qemuEvery = 0;
        String workload = "all";
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--states" -> states = Long.parseLong(args[++i]);
                case "--seed" -> seed = Long.parseLong(args[++i]);
                case "--workload" -> workload = args[++i];
                case "--qemu-every" -> qemuEvery = Integer.parseInt(args[++i]);
                default -> {
                    System.err.println("usage: CrashStateExplorer [--states N] [--seed S] [--workload W] [--qemu-every K]");
                    System.exit(2);
                }
            }
        }
        if (qemuEvery == 0) qemuEvery = (int) Math.max(20, states / 400);
        CrashStateExplorer x = new CrashStateExplorer(seed, states, workloads(workload, seed), qemuEvery, System.out);
        x.run();
        System.out.println(x.summary());
        System.exit(x.corrupt + x.lost + x.foreign + x.leaksAfterRepair + x.snapshotsBroken == 0 ? 0 : 1);
    }
}
