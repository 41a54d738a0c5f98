package io.qblk.faults;

import io.qblk.cli.ChainWrites;
import io.qblk.io.IoBackend;
import io.qblk.qcow2.BackingPolicy;
import io.qblk.qcow2.CheckReport;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.qcow2.RepairMode;
import io.qblk.target.Qcow2Target;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import io.qblk.target.ImageFormat;
import io.qblk.testing.MemoryBackend;
import io.qblk.testing.PowerCut;
import io.qblk.testing.RecordingBackend;
import java.io.IOException;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

/**
 * Power loss during {@code commit} and safe {@code rebase} (docs/ordering.md C1-C3), run through
 * {@link ChainWrites}, the code the commands run. A two-image chain: FILE ({@code top.qcow2}) over
 * BASE ({@code base.qcow2}), each an in-memory file whose writes and barriers feed its own
 * {@link PowerCut}. Before and after every write, datasync, truncate and punch of <em>either</em>
 * file, crash states of <em>both</em> files are taken at that instant (each: its durable state plus
 * a random subset of its own writes in flight, some torn) and checked as a pair, written next to
 * each other so that FILE's header finds BASE:
 * <ol>
 * <li>both open and the engine's check finds no corruption in either (leaks allowed); on a sample,
 *     neither does {@code qemu-img check} (exit 0 or 3);</li>
 * <li>FILE reads, through its chain, exactly what it read before the operation (neither operation
 *     changes FILE's guest view), sector for sector;</li>
 * <li>commit: every sector of BASE reads its old contents or FILE's (which it must read once the
 *     commit returned); rebase: FILE's header names the old or the new backing file.</li>
 * </ol>
 * Rebase writes FILE only (the backing files are real files nothing writes), so its states are
 * FILE's. Scenarios: commit (FILE emptied), commit -d, rebase onto a qcow2, onto a raw file, and
 * onto no backing file, at 512-byte, 4 KiB and 64 KiB clusters.
 */
final class ChainCrashExplorer {
    static final List<String> OPS = List.of("commit", "commit-keep", "rebase-qcow2", "rebase-raw", "rebase-none");
    static final List<Integer> CLUSTER_SIZES = List.of(512, 4096, 65536);
    private static final long SIZE = 4L << 20;

    private final long seed;
    private final int statesPerPoint, qemuEvery;
    private final PrintStream out;
    private final boolean qemu;
    /** Test of the checker: BASE's datasyncs are acknowledged but do nothing (its writes stay in flight). */
    boolean baseDropsSyncs;
    /**
     * States per scenario at most (0: every crash point): a dry run counts the crash points, then
     * every k-th one is explored so that the scenario stays within the budget.
     */
    long budgetPerScenario;
    private boolean counting;
    private int stride = 1;

    long explored, corrupt, wrongView, wrongBase, qemuChecked, emptiedStates, newHeaderStates;
    private int reported;

    ChainCrashExplorer(long seed, int statesPerPoint, int qemuEvery, PrintStream out) {
        this.seed = seed;
        this.statesPerPoint = statesPerPoint;
        this.qemuEvery = qemuEvery;
        this.out = out;
        this.qemu = qemuEvery > 0 && QemuImgCheck.available();
    }

    String summary() {
        return "chain crash-states: explored=" + explored + " corrupt=" + corrupt + " wrong-view=" + wrongView + " wrong-base=" + wrongBase;
    }

    boolean clean() {
        return corrupt + wrongView + wrongBase == 0;
    }

    /** One file of the chain on a recorded in-memory disk. */
    private final class Disk {
        final String name;
        final PowerCut cut;
        final MemoryBackend mem;
        final RecordingBackend rec;

        Disk(String name, byte[] image) {
            this.name = name;
            this.cut = new PowerCut(image);
            this.mem = new MemoryBackend(image);
            this.rec = new RecordingBackend(mem, cut::add);
        }
    }

    /** The backend the operation uses for one disk: a crash point before and after each call that changes the disk. */
    private final class Stepping implements IoBackend {
        final Disk d;
        final boolean dropSyncs;

        Stepping(Disk d, boolean dropSyncs) {
            this.d = d;
            this.dropSyncs = dropSyncs;
        }

        @Override public void read(long o, MemorySegment s) throws IOException { d.rec.read(o, s); }
        @Override public void write(long o, MemorySegment s) throws IOException { point(); d.rec.write(o, s); point(); }
        @Override public void datasync() throws IOException { point(); if (!dropSyncs) d.rec.datasync(); point(); }
        @Override public long size() throws IOException { return d.rec.size(); }
        @Override public void truncate(long l) throws IOException { point(); d.rec.truncate(l); point(); }
        @Override public void allocate(long o, long l) throws IOException { d.rec.allocate(o, l); point(); }
        @Override public void punchHole(long o, long l) throws IOException { point(); d.rec.punchHole(o, l); point(); }
        @Override public boolean readOnly() { return false; }
        @Override public void close() { }
        @Override public String toString() { return d.name; }
    }

    /** The run under way: its files, what FILE reads, what BASE read before, where crash states go. */
    private final class Run {
        final String op;
        final int clusterSize;
        final Path work, crash;
        final Disk base, top;
        final byte[] topView, baseOld;
        /** Bytes FILE held itself before the run (a state holding fewer was being emptied). */
        final long topOwn;
        final Random rnd;
        boolean recording;
        boolean returned;
        int points;

        Run(String op, int clusterSize, Path work, Disk base, Disk top, byte[] topView, byte[] baseOld) throws IOException {
            this.op = op;
            this.clusterSize = clusterSize;
            this.work = work;
            this.crash = Files.createDirectories(work.resolve("crash"));
            this.base = base;
            this.top = top;
            this.topView = topView;
            this.baseOld = baseOld;
            this.topOwn = ownBytes(work.resolve("top.qcow2"));
            this.rnd = new Random(seed * 1_000_003L + op.hashCode() * 31L + clusterSize);
            // the backing files a rebase state may name, unchanged by the run
            for (String f : new String[] {"old.qcow2", "new.qcow2", "new.raw"})
                if (Files.exists(work.resolve(f))) Files.copy(work.resolve(f), crash.resolve(f));
        }

        String where(String what) {
            return op + "-" + Workload.sizeName(clusterSize) + " seed=" + seed + " point=" + points + " " + what;
        }
    }

    private Run run;

    /** A crash point now: {@link #statesPerPoint} pairs of crash states of both files. */
    private void point() throws IOException {
        Run r = run;
        if (r == null || !r.recording) return;
        r.points++;
        if (counting || (r.points % stride != 0 && !r.returned)) return;
        for (int k = 0; k < statesPerPoint; k++) {
            byte[] t = r.top.cut.crashImage(r.rnd);
            byte[] b = r.base == null ? null : r.base.cut.crashImage(r.rnd);
            checkState(r, b, t, "state=" + k);
        }
    }

    void runAll() throws IOException {
        long t0 = System.nanoTime();
        out.println("chain explorer: seed=" + seed + " states per point=" + statesPerPoint
                + (budgetPerScenario > 0 ? ", at most " + budgetPerScenario + " per scenario" : ", every crash point") + (qemu ? ", qemu-img check on every " + qemuEvery + "th state" : " (qemu-img check off)"));
        for (String op : OPS)
            for (int cs : CLUSTER_SIZES) {
                long before = explored, bad = corrupt + wrongView + wrongBase;
                int points = explore(op, cs);
                out.printf("  %-14s %4d crash points %6d states%s%n", op + "-" + Workload.sizeName(cs), points, explored - before,
                        corrupt + wrongView + wrongBase > bad ? "  FAILURES" : "");
            }
        out.printf("chain explorer: %d states also checked by qemu-img check, %d with FILE partly or wholly emptied, %d naming the new backing file, %.1f s%n",
                qemuChecked, emptiedStates, newHeaderStates, (System.nanoTime() - t0) / 1e9);
    }

    /** Explores one scenario (within {@link #budgetPerScenario}); returns its number of crash points. */
    int explore(String op, int cs) throws IOException {
        stride = 1;
        if (budgetPerScenario > 0) {
            counting = true;
            try {
                stride = (int) Math.max(1, (long) explore1(op, cs) * statesPerPoint / budgetPerScenario);
            } finally {
                counting = false;
            }
        }
        return explore1(op, cs);
    }

    private int explore1(String op, int cs) throws IOException {
        Path work = Files.createTempDirectory(QemuImgCheck.scratchDir(), "qblk-chain-");
        try {
            return op.startsWith("commit") ? exploreCommit(op, cs, work) : exploreRebase(op, cs, work);
        } finally {
            deleteTree(work);
            run = null;
        }
    }

    private int exploreCommit(String op, int cs, Path work) throws IOException {
        Random r = new Random(seed ^ (op.hashCode() * 131L + cs));
        byte[] baseImg = image(cs, null, r, 6, work);
        Files.write(work.resolve("base.qcow2"), baseImg);
        byte[] topImg = image(cs, "base.qcow2", r, 9, work);
        Files.write(work.resolve("top.qcow2"), topImg);
        byte[] topView = viewOf(work.resolve("top.qcow2"));
        byte[] baseOld = viewOf(work.resolve("base.qcow2"));
        Disk base = new Disk("base.qcow2", baseImg), top = new Disk("top.qcow2", topImg);
        Stepping bs = new Stepping(base, baseDropsSyncs), ts = new Stepping(top, false);
        Run rn = run = new Run(op, cs, work, base, top, topView, baseOld);
        rn.recording = true;
        boolean keep = op.equals("commit-keep");
        ChainWrites.commit(() -> new Qcow2Target(Qcow2Image.open(bs, OpenOptions.defaults())),
                List.of(() -> Qcow2Image.open(ts, OpenOptions.defaults().withReadOnly(true).withBackingPolicy(BackingPolicy.NOT_OPENED))),
                keep ? null : () -> {
                    // FILE opens for writing with its chain: BASE as the run has left it so far
                    Files.write(work.resolve("base.qcow2"), base.mem.snapshot());
                    try (Qcow2Image img = Qcow2Image.open(ts, OpenOptions.defaults(), work.resolve("top.qcow2"))) {
                        ChainWrites.empty(img);
                    }
                }, n -> {});
        rn.returned = true;
        point();
        rn.recording = false;
        // the end: BASE reads what FILE read, and FILE holds nothing of its own unless -d
        checkState(rn, base.mem.snapshot(), top.mem.snapshot(), "final");
        Files.write(rn.crash.resolve("top.qcow2"), top.mem.snapshot());
        boolean holds = ownBytes(rn.crash.resolve("top.qcow2")) > 0;
        if (holds == !keep) fail(rn, "final", "FILE " + (holds ? "still holds clusters after the commit" : "was emptied by commit -d"));
        return rn.points;
    }

    private int exploreRebase(String op, int cs, Path work) throws IOException {
        Random r = new Random(seed ^ (op.hashCode() * 131L + cs));
        byte[] oldImg = image(cs, null, r, 6, work);
        Path old = work.resolve("old.qcow2");
        Files.write(old, oldImg);
        byte[] oldView = viewOf(old);
        String newName = switch (op) {
            case "rebase-qcow2" -> "new.qcow2";
            case "rebase-raw" -> "new.raw";
            default -> null;
        };
        String newFmt = newName == null ? null : newName.endsWith(".raw") ? "raw" : "qcow2";
        if (newName != null) {
            // the new backing file: the old one's contents with some ranges changed, some dropped
            byte[] view = oldView.clone();
            for (int i = 0; i < 4; i++) {
                int len = 512 * (1 + r.nextInt(256)), off = 512 * r.nextInt((int) (SIZE - len) / 512);
                if (i % 2 == 0) Arrays.fill(view, off, off + len, (byte) 0);
                else for (int j = 0; j < len; j++) view[off + j] = (byte) r.nextInt();
            }
            if (newFmt.equals("raw")) Files.write(work.resolve(newName), view);
            else {
                MemoryBackend m = new MemoryBackend();
                Qcow2Image.create(m, CreateOptions.defaults(SIZE).withClusterSize(cs));
                try (Qcow2Image img = Qcow2Image.open(m, OpenOptions.defaults())) {
                    for (int s = 0; s < view.length; s += 65536) {
                        byte[] part = Arrays.copyOfRange(view, s, s + 65536);
                        if (!Arrays.equals(part, new byte[part.length])) img.write(s, MemorySegment.ofArray(part));
                    }
                }
                Files.write(work.resolve(newName), m.snapshot());
            }
        }
        byte[] topImg = image(cs, "old.qcow2", r, 9, work);
        Path topPath = work.resolve("top.qcow2");
        Files.write(topPath, topImg);
        byte[] topView = viewOf(topPath);
        Disk top = new Disk("top.qcow2", topImg);
        Stepping ts = new Stepping(top, false);
        Run rn = run = new Run(op, cs, work, null, top, topView, null);
        try (var nb = newName == null ? null : TargetOpener.open(work.resolve(newName),
                TargetOptions.defaults().withFormat(ImageFormat.parse(newFmt)).withReadOnly(true))) {
            rn.recording = true;
            ChainWrites.rebase(ts, () -> Qcow2Image.open(ts, OpenOptions.defaults(), topPath), nb, newName, newFmt, n -> {});
            rn.returned = true;
            point();
            rn.recording = false;
        }
        checkState(rn, null, top.mem.snapshot(), "final");
        return rn.points;
    }

    /**
     * A fresh qcow2 image of {@link #SIZE} over {@code backing} (a name in {@code work}; null: none),
     * written by {@code ops} random operations: data writes of 512 bytes to 256 KiB (partial clusters
     * copy from the backing file), write zeroes with and without unmap, a discard.
     */
    private static byte[] image(int cs, String backing, Random r, int ops, Path work) throws IOException {
        MemoryBackend m = new MemoryBackend();
        CreateOptions co = CreateOptions.defaults(SIZE).withClusterSize(cs);
        if (backing != null) co = co.withBacking(backing, "qcow2");
        Qcow2Image.create(m, co);
        try (Qcow2Image img = Qcow2Image.open(m, OpenOptions.defaults(), work.resolve("image.qcow2"))) {
            for (int i = 0; i < ops; i++) {
                int len = 512 * (1 + r.nextInt(512));
                long off = 512L * r.nextInt((int) (SIZE - len) / 512);
                switch (i % 5) {
                    case 3 -> img.writeZeroes(off, len, r.nextBoolean());
                    case 4 -> img.discard(off, len);
                    default -> {
                        byte[] b = new byte[len];
                        r.nextBytes(b);
                        img.write(off, MemorySegment.ofArray(b));
                    }
                }
            }
        }
        return m.snapshot();
    }

    /** Bytes the image at {@code p} holds itself (data and zero clusters). */
    private static long ownBytes(Path p) throws IOException {
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true).withBackingPolicy(BackingPolicy.NOT_OPENED))) {
            return img.map(0, img.virtualSize()).stream().filter(m -> m.depth() == 0 && m.present()).mapToLong(m -> m.length()).sum();
        }
    }

    /** The guest view of the image at {@code p}, through its chain. */
    private static byte[] viewOf(Path p) throws IOException {
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true)); Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(img.virtualSize(), 4096);
            img.read(0, s);
            return s.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    private void checkState(Run r, byte[] baseState, byte[] topState, String what) throws IOException {
        if (counting) return;
        explored++;
        String where = r.where(what);
        Path t = r.crash.resolve("top.qcow2"), b = r.crash.resolve("base.qcow2");
        Files.write(t, topState);
        if (baseState != null) Files.write(b, baseState);
        boolean sample = qemu && explored % qemuEvery == 0;
        if (sample) qemuChecked++;
        try {
            if (baseState != null) {
                if (!checkImage(b, where, sample)) return;
                byte[] view = viewOf(b);
                for (int s = 0; s < SIZE; s += 512) {
                    boolean isNew = Arrays.equals(view, s, s + 512, r.topView, s, s + 512);
                    boolean isOld = Arrays.equals(view, s, s + 512, r.baseOld, s, s + 512);
                    if (r.returned ? !isNew : !isNew && !isOld) {
                        wrongBase++;
                        report(where, "BASE sector " + s / 512 + " reads neither " + (r.returned ? "" : "its old contents nor ") + "FILE's (commit "
                                + (r.returned ? "returned" : "under way") + ")");
                        return;
                    }
                }
            }
            if (!checkImage(t, where, sample)) return;
            try (Qcow2Image img = Qcow2Image.open(t, OpenOptions.defaults().withReadOnly(true).withBackingPolicy(BackingPolicy.NOT_OPENED))) {
                String bf = img.info().backingFilename();
                if (r.op.startsWith("rebase")) {
                    String want = r.op.equals("rebase-qcow2") ? "new.qcow2" : r.op.equals("rebase-raw") ? "new.raw" : null;
                    boolean isNew = java.util.Objects.equals(bf, want);
                    if (isNew) newHeaderStates++;
                    if (!isNew && !"old.qcow2".equals(bf) || (r.returned && !isNew)) {
                        corrupt++;
                        report(where, "FILE names backing file " + bf);
                        return;
                    }
                }
            }
            if (r.op.startsWith("commit") && ownBytes(t) < r.topOwn) emptiedStates++;
            byte[] view = viewOf(t);
            int s = Arrays.mismatch(view, r.topView);
            if (s >= 0) {
                wrongView++;
                report(where, "FILE reads differently through its chain from guest offset " + s / 512 * 512);
            }
        } catch (IOException | RuntimeException e) {
            corrupt++;
            report(where, "engine error: " + e);
        }
    }

    /** The image opens (its chain too) and neither the engine's check nor (sampled) qemu-img check finds more than leaks. */
    private boolean checkImage(Path p, String where, boolean sample) throws IOException {
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
            CheckReport c = img.check(RepairMode.NONE);
            if (c.corruptions() > 0 || c.checkErrors() > 0) {
                corrupt++;
                report(where, p.getFileName() + ": check: " + c.corruptions() + " corruptions, " + c.checkErrors() + " errors: " + c.messages());
                return false;
            }
        } catch (IOException e) {
            corrupt++;
            report(where, p.getFileName() + ": open failed: " + e.getMessage());
            return false;
        }
        if (!sample) return true;
        int rc = qemuImgCheck(p);
        if (rc != 0 && rc != 3) {
            corrupt++;
            report(where, p.getFileName() + ": qemu-img check exit " + rc);
            return false;
        }
        return true;
    }

    private static int qemuImgCheck(Path p) throws IOException {
        try {
            Process pr = new ProcessBuilder("qemu-img", "check", "-q", "-f", "qcow2", p.toString()).redirectErrorStream(true).start();
            pr.getInputStream().readAllBytes();
            if (!pr.waitFor(60, TimeUnit.SECONDS)) {
                pr.destroyForcibly();
                throw new IOException("qemu-img check timed out");
            }
            return pr.exitValue();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    private void fail(Run r, String what, String msg) {
        if (counting) return;
        corrupt++;
        report(r.where(what), msg);
    }

    private void report(String where, String msg) {
        if (reported++ < 20) out.println("  FAIL " + where + ": " + msg);
    }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (var s = Files.walk(p)) {
            for (Path q : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(q);
        }
    }

    // ------------------------------------------------------------------ command line

    public static void main(String[] args) throws Exception {
        long seed = System.nanoTime() & 0xffffffL;
        int perPoint = 4, qemuEvery = 25;
        long budget = 0;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--seed" -> seed = Long.parseLong(args[++i]);
                case "--states-per-point" -> perPoint = Integer.parseInt(args[++i]);
                case "--qemu-every" -> qemuEvery = Integer.parseInt(args[++i]);
                case "--states-per-scenario" -> budget = Long.parseLong(args[++i]);
                default -> {
                    System.err.println("usage: ChainCrashExplorer [--seed S] [--states-per-point K] [--states-per-scenario N] [--qemu-every N]");
                    System.exit(2);
                }
            }
        }
        ChainCrashExplorer x = new ChainCrashExplorer(seed, perPoint, qemuEvery, System.out);
        x.budgetPerScenario = budget;
        x.runAll();
        System.out.println(x.summary());
        System.exit(x.clean() ? 0 : 1);
    }
}
