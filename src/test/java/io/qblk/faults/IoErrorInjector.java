package io.qblk.faults;

import io.qblk.io.Errno;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Preallocation;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.testing.FaultyBackend.Op;
import io.qblk.testing.FaultyBackend;
import io.qblk.testing.MemoryBackend;
import io.qblk.testing.RecordingBackend;
import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

/**
 * Exhaustive I/O error injection (the idea of qemu iotests 026): for every workload, every kind of
 * call (write, datasync, allocation), both EIO and ENOSPC, and every N, the Nth such call fails.
 * Checked: the failing guest operation reports the error (never a silent success); every crash
 * state after the failure, including the final image after close, opens without corruption and
 * holds every sector flushed successfully (through {@link CrashStateExplorer#exploreFrom}, with
 * failed operations counted as may-or-may-not-have-happened); a preallocating create fails.
 */
final class IoErrorInjector {
    private final long seed;
    private final PrintStream out;
    final CrashStateExplorer checker;
    long injected, silent, runs;

    IoErrorInjector(long seed, PrintStream out) {
        this.seed = seed;
        this.out = out;
        this.checker = new CrashStateExplorer(seed, 0, List.of(), 0, out);
    }

    /** The kinds of call whose Nth one fails: writes, datasyncs, allocations (truncate/fallocate). */
    enum Target {
        WRITE(EnumSet.of(Op.WRITE)), DATASYNC(EnumSet.of(Op.DATASYNC)), ALLOCATION(FaultyBackend.ALLOCATION);

        final Set<Op> ops;

        Target(Set<Op> ops) {
            this.ops = ops;
        }
    }

    static final List<Target> TARGETS = List.of(Target.values());
    static final int[] ERRNOS = {Errno.EIO, Errno.ENOSPC};

    long corrupt() {
        return checker.corrupt + checker.foreign + checker.leaksAfterRepair;
    }

    String summary() {
        return "io-errors: injected=" + injected + " corrupt=" + (corrupt() + silent) + " lost=" + checker.lost;
    }

    void run(List<Workload> workloads, int statesPerPoint) throws IOException {
        long t0 = System.nanoTime();
        for (Workload w : workloads) {
            long before = injected, bad = corrupt() + silent + checker.lost;
            byte[] base = w.baseImage();
            for (Target t : TARGETS) {
                long calls = runOnce(w, base, t, 0, Errno.EIO, statesPerPoint);
                for (int errno : ERRNOS) for (long n = 1; n <= calls; n++) runOnce(w, base, t, n, errno, statesPerPoint);
            }
            out.printf("  %-14s %6d injections%s%n", w.name(), injected - before, corrupt() + silent + checker.lost > bad ? "  FAILURES" : "");
        }
        preallocation();
        out.printf("injector: %d runs, %d crash states checked after failures, silent successes=%d, corrupt=%d, foreign=%d, leaks after repair=%d, lost=%d, %.1f s%n",
                runs, checker.explored, silent, checker.corrupt, checker.foreign, checker.leaksAfterRepair, checker.lost, (System.nanoTime() - t0) / 1e9);
    }

    /** Runs the workload with the Nth call of kind {@code t} failing (0: none); returns the number of such calls seen. */
    long runOnce(Workload w, byte[] base, Target t, long n, int errno, int statesPerPoint) throws IOException {
        runs++;
        FaultyBackend fb = new FaultyBackend(new MemoryBackend(base)).failNth(t.ops, n, errno);
        RecordingBackend rec = new RecordingBackend(fb);
        String where = w.name() + " seed=" + seed + " " + Errno.name(errno) + " on " + t.name().toLowerCase() + " #" + n;
        List<GuestOp> ops = new ArrayList<>();
        Qcow2Image img;
        try {
            img = Qcow2Image.open(rec, w.openOptions());
        } catch (IOException e) {
            if (fb.injected() == 0) throw e;
            injected++;
            return fb.count(); // open reported it; nothing was written
        }
        ops.addAll(w.run(img, rec::clock, false, null));
        long start = rec.clock();
        boolean closed = true;
        try {
            img.close();
        } catch (IOException e) {
            closed = false;
        }
        // close flushes; after a failed datasync the image is poisoned (docs/ordering.md, "Failures"): its
        // close writes nothing and promises nothing (the guest saw the error), so it is no flush to check
        boolean poisoned = t == Target.DATASYNC && fb.injected() > 0;
        ops.add(new GuestOp(ops.size(), GuestOp.Type.FLUSH, 0, 0, closed && !poisoned, start, rec.clock()));
        if (fb.injected() == 0) return fb.count();
        injected++;
        // 1. every failed call surfaced as an error of the guest operation that made it
        for (long tick : rec.failures()) {
            GuestOp hit = null;
            for (GuestOp op : ops) if (op.startTick() <= tick && tick < op.endTick()) hit = op;
            if (hit == null || hit.ok()) {
                silent++;
                checker.report(where, "failed call at tick " + tick + " was not reported: " + (hit == null ? "outside any operation" : hit + " succeeded"));
                break;
            }
        }
        // 2+3. crash states after the failure and the final image: no corruption, flushed data intact
        long first = rec.failures().getFirst();
        checker.exploreFrom(new CrashStateExplorer.Recorded(w, base, rec.log(), List.copyOf(ops)), first, statesPerPoint);
        return fb.count();
    }

    /** create with preallocation on a failing file: every injected failure makes create fail. */
    void preallocation() throws IOException {
        for (Preallocation p : List.of(Preallocation.METADATA, Preallocation.FALLOC, Preallocation.FULL)) {
            CreateOptions o = CreateOptions.defaults(1L << 20).withClusterSize(4096).withPreallocation(p);
            for (Target t : TARGETS) {
                FaultyBackend count = new FaultyBackend(new MemoryBackend()).failNth(t.ops, 0, Errno.EIO);
                Qcow2Image.create(count, o);
                for (int errno : ERRNOS) {
                    for (long n = 1; n <= count.count(); n++) {
                        runs++;
                        FaultyBackend fb = new FaultyBackend(new MemoryBackend()).failNth(t.ops, n, errno);
                        boolean threw = false;
                        try {
                            Qcow2Image.create(fb, o);
                        } catch (IOException e) {
                            threw = true;
                        }
                        if (fb.injected() > 0) {
                            injected++;
                            if (!threw) {
                                silent++;
                                checker.report("create preallocation=" + p + " " + Errno.name(errno) + " on " + t + " #" + n, "create succeeded although a call failed");
                            }
                        }
                    }
                }
            }
        }
    }

    static List<Workload> workloads(String filter, long seed) {
        List<Workload> ws = new ArrayList<>();
        for (String k : Workload.KINDS)
            for (int cs : Workload.CLUSTER_SIZES) {
                if (!Workload.applies(k, cs) || k.equals("subcluster-backing")) continue;
                Workload w = Workload.generate(k, cs, seed, true);
                if (filter == null || filter.equals("all") || filter.equals(k) || filter.equals(w.name()) || filter.equals(Workload.sizeName(cs))) ws.add(w);
            }
        if (ws.isEmpty()) throw new IllegalArgumentException("no workload matches " + filter);
        return ws;
    }

    public static void main(String[] args) throws Exception {
        long seed = System.nanoTime() & 0xffffffL;
        String workload = "all";
        int perPoint = 3;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--seed" -> seed = Long.parseLong(args[++i]);
                case "--workload" -> workload = args[++i];
                case "--states-per-point" -> perPoint = Integer.parseInt(args[++i]);
                default -> {
                    System.err.println("usage: IoErrorInjector [--seed S] [--workload W] [--states-per-point K]");
                    System.exit(2);
                }
            }
        }
        IoErrorInjector x = new IoErrorInjector(seed, System.out);
        System.out.println("injector: seed=" + seed);
        x.run(workloads(workload, seed), perPoint);
        System.out.println(x.summary());
        System.exit(x.corrupt() + x.silent + x.checker.lost == 0 ? 0 : 1);
    }
}
