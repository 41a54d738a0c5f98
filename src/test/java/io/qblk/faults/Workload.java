package io.qblk.faults;

import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.testing.MemoryBackend;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.LongSupplier;

/**
 * A reproducible sequence of guest operations on a fresh image of one cluster size: random
 * 4 KiB–1 MiB writes (allocating data clusters, L2 tables, refcount blocks; with 512-byte clusters
 * and 64-bit refcounts also growing the refcount table), rewrites of allocated clusters, write
 * zeroes, discard, and flushes. The "subcluster" kinds run mixed operations, many shorter than a
 * cluster, on an image with extended L2 entries (cluster sizes of 16k and more only), without and
 * with a raw backing file whose sectors carry tags of their own ({@link #BACKING_ID}).
 */
record Workload(String kind, int clusterSize, int refcountBits, long virtualSize, long seed, List<Planned> ops) {

    /**
     * "writethrough" is "mixed" on an engine with metadata write-through (commits without phase B's
     * sync); "bitmaps" is "mixed" on an image with persistent dirty bitmaps made by qemu-img (two
     * enabled, one disabled), so close writes them back (docs/ordering.md, B1-B4); "snapshot" writes
     * under internal snapshots, creates/deletes them and applies one (S1-S7); "subcluster" is "mixed" on an image with
     * extended L2 entries, "subcluster-backing" the same over a raw backing file whose sectors carry tags;
     * "lazy" is "writethrough" on an image with lazy refcounts (commits leave refcount blocks dirty,
     * the dirty bit is set: docs/ordering.md L1-L3), so its crash states are repaired when opened;
     * "tail" is write-through writes only (most of them allocating, many shorter than a cluster, a
     * few flushes) on an empty image without backing file: the allocations docs/ordering.md R17 maps
     * into the fresh zero tail without a sync before the L2 write.
     * "snapshot-resize" starts from an image resized since its snapshot "base" was taken
     * ({@link #startSize}, {@link #snapshotSize}), runs "mixed" operations and a snapshot create on
     * it and ends by applying "base", which gives the image the snapshot's size (S7, step 3b).
     * "pages" (docs/ordering.md R18) runs at 8 KiB clusters (write-through, 16 MiB disk) and 16 KiB
     * clusters (write-back, 32 MiB disk) with 64-bit refcounts, where every L2 table and refcount block
     * spans several 4 KiB pages: writes scattered over the disk (every other one of 1 MiB, so that
     * the file outgrows a refcount block's first page), some discards, a few flushes; tables are
     * written in part, page by page, many times.
     * "planned" (docs/ordering.md W2) is write-through writes on a preallocated (metadata) image,
     * each sent as a planned write ({@link Qcow2Image#planWrite}) when the engine offers one: the run
     * writes the file itself, acknowledges the write, and reports its completion only after the
     * next operation (a FLUSH a third of the time) has run, as a ublk tag's linked write may complete
     * to the guest before the ring thread reports it; otherwise an ordinary write.
     */
    static final List<String> KINDS = List.of("alloc", "rewrite", "zero", "discard", "mixed", "writethrough", "lazy", "tail", "snapshot", "snapshot-resize", "bitmaps", "subcluster", "subcluster-backing", "pages", "planned");
    /** The enabled bitmaps of a "bitmaps" workload's image (a disabled one, "off", is never tracked). */
    static final List<String> BITMAPS = List.of("b0", "b1");
    /**
     * Kinds whose recorded run is a repair or an amend, not guest I/O: "rebuild" runs the "mixed" operations,
     * closes the image, breaks its refcount structure ({@link #refcountDamage}) and records
     * {@code check(ALL)} rebuilding it (the crash states are those of the rebuild); "refcount-width"
     * runs the "snapshot" operations (the "mixed" ones when the new width is 1 bit, which holds no
     * shared cluster), closes the image and records the change of its refcount width to
     * {@link #newRefcountBits} (docs/ordering.md R15).
     */
    static final List<String> REPAIR_KINDS = List.of("rebuild", "refcount-width");
    /** The widths "refcount-width" changes to, varied over seeds and cluster sizes (16 stands in for the image's own). */
    static final List<Integer> WIDTHS = List.of(1, 2, 4, 8, 32, 64);
    /** How "rebuild" breaks the refcount structure: table entry 0 past EOF, on an L2 table, or the table zeroed. */
    static final List<String> DAMAGES = io.qblk.cli.ImagePatcher.DAMAGES;
    static final List<Integer> CLUSTER_SIZES = List.of(512, 4096, 65536, 2 << 20);

    record Planned(GuestOp.Type type, long offset, long length) {}

    /** The write id the backing file's sector tags carry (no guest op has it). */
    static final int BACKING_ID = (1 << 24) - 2;
    /** Write ids of a "snapshot-resize" base image's data: written before snapshot "base", and after the resize. */
    static final int BASE_SNAPSHOT_ID = (1 << 24) - 3, BASE_RESIZED_ID = (1 << 24) - 4;

    /** A "snapshot-resize" workload: the image was resized since snapshot "base", which its last op applies. */
    boolean resizesOnApply() { return kind.equals("snapshot-resize"); }

    /** For "snapshot-resize": whether applying "base" grows the image (it was shrunk since), else shrinks it. */
    boolean growsOnApply() {
        return ((CLUSTER_SIZES.indexOf(clusterSize) + seed) & 1) == 0;
    }

    /** The virtual size the recorded run starts at ({@link #virtualSize}, the largest, except for "snapshot-resize"). */
    long startSize() {
        return resizesOnApply() && growsOnApply() ? virtualSize / 2 : virtualSize;
    }

    /** The virtual size of a "snapshot-resize" image's snapshot "base" (what the image has after the apply). */
    long snapshotSize() {
        return resizesOnApply() && !growsOnApply() ? virtualSize / 2 : virtualSize;
    }

    /** The name of the snapshot a SNAPSHOT_APPLY or SNAPSHOT_DELETE op names by {@code offset}: "base" when negative. */
    static String snapshotName(long offset) {
        return offset < 0 ? "base" : "s" + offset;
    }

    /** The cluster sizes "pages" runs at: tables of several 4 KiB pages on a small disk. */
    static final List<Integer> PAGES_CLUSTER_SIZES = List.of(8192, 16384);

    /** The cluster sizes a kind is generated at ({@link #CLUSTER_SIZES}, except for "pages"). */
    static List<Integer> clusterSizes(String kind) {
        return kind.equals("pages") ? PAGES_CLUSTER_SIZES : CLUSTER_SIZES;
    }

    /** Whether a kind runs at a cluster size (extended L2 entries need 16k clusters or more). */
    static boolean applies(String kind, int clusterSize) {
        if (kind.equals("pages")) return PAGES_CLUSTER_SIZES.contains(clusterSize);
        return !kind.startsWith("subcluster") || clusterSize >= 16384;
    }

    /** The image has extended L2 entries (32 subclusters per cluster). */
    boolean extendedL2() { return kind.startsWith("subcluster"); }

    /** The image has a raw backing file tagged with {@link #BACKING_ID}. */
    boolean backed() { return kind.equals("subcluster-backing"); }

    /** How the engine opens the image for this workload. */
    io.qblk.qcow2.OpenOptions openOptions() {
        io.qblk.qcow2.OpenOptions o = io.qblk.qcow2.OpenOptions.defaults();
        boolean through = kind.equals("writethrough") || kind.equals("tail") || kind.equals("planned") || lazyRefcounts()
                || (kind.equals("pages") && clusterSize == 8192);
        return through ? o.withMetadataWrite(io.qblk.qcow2.MetadataWrite.WRITETHROUGH) : o;
    }

    /** The image has lazy refcounts (and is written through, so commits skip refcount blocks). */
    boolean lazyRefcounts() {
        return kind.equals("lazy");
    }

    String name() {
        return kind + "-" + sizeName(clusterSize) + (kind.equals("rebuild") ? "-" + refcountDamage() : "")
                + (kind.equals("refcount-width") ? "-to" + newRefcountBits() : "");
    }

    /** For "refcount-width": the new refcount width. */
    int newRefcountBits() {
        return newRefcountBits(seed, clusterSize, refcountBits);
    }

    private static int newRefcountBits(long seed, int clusterSize, int refcountBits) {
        int b = WIDTHS.get((int) Math.floorMod(seed + CLUSTER_SIZES.indexOf(clusterSize), (long) WIDTHS.size()));
        return b == refcountBits ? 16 : b;
    }

    /** For "rebuild": the damage, varied over seeds and cluster sizes. */
    String refcountDamage() {
        return DAMAGES.get((int) Math.floorMod(seed + CLUSTER_SIZES.indexOf(clusterSize), (long) DAMAGES.size()));
    }

    static String sizeName(int cs) {
        return cs >= (1 << 20) ? (cs >> 20) + "M" : cs >= 1024 ? (cs >> 10) + "k" : String.valueOf(cs);
    }

    static Workload generate(String kind, int clusterSize, long seed) {
        return generate(kind, clusterSize, seed, false);
    }

    /** {@code small}: fewer and shorter operations (at most 64 KiB), for exhaustive I/O error injection. */
    static Workload generate(String kind, int clusterSize, long seed, boolean small) {
        Random r = new Random(seed ^ (kind.hashCode() * 31L + clusterSize));
        boolean pages = kind.equals("pages");
        int refBits = clusterSize == 512 || pages ? 64 : 16;
        long fullSize = pages ? clusterSize * 2048L : clusterSize == 512 ? 4L << 20 : clusterSize == (2 << 20) ? 16L << 20 : 8L << 20;
        // the guest ops stay inside the size the run starts at
        long vsize = new Workload(kind, clusterSize, refBits, fullSize, seed, List.of()).startSize();
        long maxLen = small ? 65536 : Math.min(1L << 20, vsize / 4);
        List<Planned> ops = new ArrayList<>();
        int n = small ? 6 + r.nextInt(3) : 14 + r.nextInt(6);
        // a hot region that later operations keep coming back to
        long hot = align(r.nextLong(vsize - maxLen), 512);
        // internal snapshots (refcounts of 2 and more): "snapshot", and "refcount-width" unless to 1 bit
        boolean snapshots = kind.equals("snapshot") || (kind.equals("refcount-width") && newRefcountBits(seed, clusterSize, refBits) > 1);
        for (int i = 0; i < n; i++) {
            GuestOp.Type t = switch (kind) {
                case "alloc", "tail" -> GuestOp.Type.WRITE;
                case "pages" -> i % 5 == 2 ? (r.nextBoolean() ? GuestOp.Type.DISCARD : GuestOp.Type.ZERO_UNMAP) : GuestOp.Type.WRITE;
                case "rewrite", "planned" -> GuestOp.Type.WRITE;
                case "zero" -> i % 3 == 1 ? (r.nextBoolean() ? GuestOp.Type.WRITE_ZEROES : GuestOp.Type.ZERO_UNMAP) : GuestOp.Type.WRITE;
                case "discard" -> i % 3 == 1 ? GuestOp.Type.DISCARD : GuestOp.Type.WRITE;
                case "mixed", "writethrough", "lazy", "snapshot", "snapshot-resize", "rebuild", "refcount-width", "bitmaps", "subcluster", "subcluster-backing" -> switch (r.nextInt(8)) {
                    case 0 -> GuestOp.Type.WRITE_ZEROES;
                    case 1 -> GuestOp.Type.ZERO_UNMAP;
                    case 2 -> GuestOp.Type.DISCARD;
                    default -> GuestOp.Type.WRITE;
                };
                default -> throw new IllegalArgumentException("unknown workload " + kind + " (one of " + KINDS + ")");
            };
            long len = align(4096 + (long) (Math.pow(r.nextDouble(), 3) * (maxLen - 4096)), 512);
            if (pages && t == GuestOp.Type.WRITE) len = i % 2 == 0 ? 1L << 20 : 512 * (1 + r.nextInt(16)); // 1 MiB, or a few sectors
            if (kind.equals("tail") && r.nextBoolean()) len = 512 * (1 + r.nextInt(Math.max(1, Math.min(clusterSize, 65536) / 512))); // often partial clusters
            if (kind.equals("planned") && r.nextInt(4) > 0) len = 512 * (1 + r.nextInt(32)); // mostly block-sized, as a filesystem writes
            if (kind.startsWith("subcluster") && r.nextBoolean()) len = 512 * (1 + r.nextInt(Math.max(1, clusterSize / 512 / 8))); // within a few subclusters
            boolean nearHot = !kind.equals("alloc") && !kind.equals("tail") && (t != GuestOp.Type.WRITE || kind.equals("rewrite") || kind.equals("planned") || r.nextInt(3) == 0);
            long off = nearHot ? hot + align(r.nextLong(maxLen), 512) - maxLen / 2 : align(r.nextLong(vsize), 512);
            off = Math.max(0, Math.min(off, vsize - len));
            if (r.nextInt(4) == 0) off = align(off, clusterSize); // sometimes cluster aligned, to hit the full-cluster paths
            off = Math.min(off, vsize - len);
            ops.add(new Planned(t, off, len));
            if (snapshots && (i == 2 || i == n / 2 || i == n - 3)) {
                // internal snapshots: the writes after them copy shared L2 tables and data clusters;
                // the first one is deleted again later
                if (i == n - 3) ops.add(new Planned(GuestOp.Type.SNAPSHOT_DELETE, firstSnapshot(ops), 0));
                else ops.add(new Planned(GuestOp.Type.SNAPSHOT, 0, 0));
            }
            if (snapshots && i == n - 2) {
                // revert to the latest snapshot still there: later writes land on its contents
                long live = liveSnapshot(ops);
                if (live >= 0) ops.add(new Planned(GuestOp.Type.SNAPSHOT_APPLY, live, 0));
            }
            if (kind.equals("snapshot-resize") && i == n / 2) ops.add(new Planned(GuestOp.Type.SNAPSHOT, 0, 0));
            if (r.nextInt(3) == 0 || i == n / 2) ops.add(new Planned(GuestOp.Type.FLUSH, 0, 0));
        }
        if (kind.equals("snapshot-resize")) {
            // the apply changes the size, after which the engine refuses writes until reopened: it ends the run
            ops.add(new Planned(GuestOp.Type.SNAPSHOT_APPLY, -1, 0));
            return new Workload(kind, clusterSize, refBits, fullSize, seed, List.copyOf(ops));
        }
        ops.add(new Planned(GuestOp.Type.FLUSH, 0, 0));
        // writes after the final flush: the last epoch is never flushed
        ops.add(new Planned(GuestOp.Type.WRITE, align(r.nextLong(vsize - 65536), 512), 8192));
        return new Workload(kind, clusterSize, refBits, fullSize, seed, List.copyOf(ops));
    }

    /** The index of the latest planned snapshot create not deleted since; -1 if none. */
    private static long liveSnapshot(List<Planned> ops) {
        for (int i = ops.size() - 1; i >= 0; i--) {
            if (ops.get(i).type() != GuestOp.Type.SNAPSHOT) continue;
            int idx = i;
            if (ops.stream().noneMatch(p -> p.type() == GuestOp.Type.SNAPSHOT_DELETE && p.offset() == idx)) return i;
        }
        return -1;
    }

    private static long firstSnapshot(List<Planned> ops) {
        for (int i = 0; i < ops.size(); i++) if (ops.get(i).type() == GuestOp.Type.SNAPSHOT) return i;
        throw new IllegalStateException("no snapshot to delete");
    }

    /** The image the workload starts from: a fresh image of its geometry (with bitmaps for "bitmaps"), all guest bytes zero. */
    byte[] baseImage() throws IOException {
        MemoryBackend template = new MemoryBackend();
        if (resizesOnApply()) return resizedSinceSnapshot();
        if (!kind.equals("bitmaps")) {
            CreateOptions co = CreateOptions.defaults(virtualSize).withClusterSize(clusterSize).withRefcountBits(refcountBits).withExtendedL2(extendedL2())
                    .withLazyRefcounts(lazyRefcounts());
            // "planned": every cluster mapped from the start (in order: host-contiguous), so most writes can be planned
            if (kind.equals("planned")) co = co.withPreallocation(io.qblk.qcow2.Preallocation.METADATA);
            if (backed()) co = co.withBacking(CrashStateExplorer.backingFile(virtualSize).toString(), "raw");
            Qcow2Image.create(template, co);
            return template.snapshot();
        }
        Path f = Files.createTempFile(QemuImgCheck.scratchDir(), "qblk-bitmaps-", ".qcow2");
        try {
            Files.delete(f);
            qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=" + clusterSize + ",refcount_bits=" + refcountBits, f.toString(), String.valueOf(virtualSize));
            qemu("qemu-img", "bitmap", "--add", f.toString(), BITMAPS.get(0));
            qemu("qemu-img", "bitmap", "--add", "-g", String.valueOf(2L * clusterSize), f.toString(), BITMAPS.get(1));
            qemu("qemu-img", "bitmap", "--add", "--disable", f.toString(), "off");
            // a bit set (and so a bitmap data cluster) before qblk opens it; guest bytes stay zero
            qemu("qemu-io", "-f", "qcow2", "-c", "write -z 0 4k", f.toString());
            byte[] b = Files.readAllBytes(f);
            return b;
        } finally {
            Files.deleteIfExists(f);
        }
    }

    /**
     * For "snapshot-resize": an image of {@link #snapshotSize} with tagged data ({@link
     * #BASE_SNAPSHOT_ID}, one run ending at its last sector), snapshot "base" taken, resized to
     * {@link #startSize} (grown: with 512-byte clusters the L1 table moves; shrunk: the clusters
     * past the end are freed) and more tagged data written ({@link #BASE_RESIZED_ID}).
     */
    private byte[] resizedSinceSnapshot() throws IOException {
        MemoryBackend m = new MemoryBackend();
        Qcow2Image.create(m, CreateOptions.defaults(snapshotSize()).withClusterSize(clusterSize).withRefcountBits(refcountBits));
        Random r = new Random(seed * 31 + clusterSize);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(256 << 10, 4096);
            try (Qcow2Image img = Qcow2Image.open(m, io.qblk.qcow2.OpenOptions.defaults())) {
                writeTagged(img, buf, BASE_SNAPSHOT_ID, snapshotSize(), r);
                img.createSnapshot("base");
            }
            try (Qcow2Image img = Qcow2Image.open(m, io.qblk.qcow2.OpenOptions.defaults())) {
                img.resize(startSize());
            }
            try (Qcow2Image img = Qcow2Image.open(m, io.qblk.qcow2.OpenOptions.defaults())) {
                writeTagged(img, buf, BASE_RESIZED_ID, startSize(), r);
            }
        }
        return m.snapshot();
    }

    /** Three tagged runs of up to {@code buf}'s size at random places inside {@code size}, and one ending at its last sector. */
    private static void writeTagged(Qcow2Image img, MemorySegment buf, int id, long size, Random r) throws IOException {
        for (int k = 0; k < 4; k++) {
            long len = align(4096 + r.nextLong(buf.byteSize() - 4096), 512);
            long off = k == 3 ? size - len : align(r.nextLong(size - len), 512);
            MemorySegment s = buf.asSlice(0, len);
            SectorTags.fill(s, id, off / 512);
            img.write(off, s);
        }
    }

    private static void qemu(String... cmd) throws IOException {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes());
            if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) throw new IOException(String.join(" ", cmd) + " failed: " + out);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    /**
     * The decoded tag of every guest sector of snapshot {@code name} (what an apply makes the guest
     * read), {@link #virtualSize} of them: zeroes past the snapshot's own size.
     */
    private long[] snapshotSectors(Qcow2Image img, String name, Arena arena) throws IOException {
        long size = img.snapshotSize(name);
        MemorySegment disk = arena.allocate(size, 4096);
        img.readSnapshot(name, 0, disk);
        long[] v = new long[(int) (virtualSize / 512)];
        java.util.Arrays.fill(v, SectorTags.ZERO);
        for (int s = 0; s < size / 512; s++) v[s] = SectorTags.decode(disk, 512L * s);
        return v;
    }

    private static long align(long v, long a) {
        return v / a * a;
    }

    /**
     * Runs every op on {@code img}. An op that throws is recorded as failed; with
     * {@code stopOnError} the run ends there, otherwise it goes on with the next op.
     */
    List<GuestOp> run(Qcow2Image img, LongSupplier clock, boolean stopOnError, List<IOException> errors) {
        List<GuestOp> done = new ArrayList<>();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(1L << 20, 4096);
            io.qblk.io.FilePlan plan = new io.qblk.io.FilePlan();
            boolean pending = false; // "planned": a write acknowledged whose completion is reported after the next op
            for (Planned p : ops) {
                int id = done.size();
                long start = clock.getAsLong();
                boolean ok = true, planned = false;
                long[] applied = null;
                try {
                    switch (p.type()) {
                        case WRITE -> {
                            MemorySegment s = buf.asSlice(0, p.length());
                            SectorTags.fill(s, id, p.offset() / 512);
                            if (kind.equals("planned") && !pending && img.planWrite(p.offset(), s, plan)) {
                                planned = true;
                                plan.file().write(plan.fileOffset(), s); // what the ring would submit
                            } else img.write(p.offset(), s);
                        }
                        case WRITE_ZEROES -> img.writeZeroes(p.offset(), p.length(), false);
                        case ZERO_UNMAP -> img.writeZeroes(p.offset(), p.length(), true);
                        case DISCARD -> img.discard(p.offset(), p.length());
                        case FLUSH -> img.flush();
                        case SNAPSHOT -> img.createSnapshot("s" + id);
                        case SNAPSHOT_DELETE -> img.deleteSnapshot(snapshotName(p.offset()));
                        case SNAPSHOT_APPLY -> {
                            applied = snapshotSectors(img, snapshotName(p.offset()), arena);
                            start = clock.getAsLong();
                            img.applySnapshot(snapshotName(p.offset()));
                        }
                    }
                } catch (IOException e) {
                    ok = false;
                    if (errors != null) errors.add(e);
                }
                done.add(new GuestOp(id, p.type(), p.offset(), p.length(), ok, start, clock.getAsLong(), applied));
                if (pending && !planned) { // the previous op's planned write: its completion reaches the engine only now (W2)
                    plan.release();
                    pending = false;
                }
                if (planned) pending = true;
                if (!ok && stopOnError) break;
            }
            if (pending) plan.release();
        }
        return done;
    }
}
