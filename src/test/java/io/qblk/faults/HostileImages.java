package io.qblk.faults;

import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.qcow2.RepairMode;
import java.io.IOException;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Valid images mutated into hostile ones: bit flips in header, L1/L2 entries, refcount table and
 * blocks; sizes near 2^63; tables past the end of the file; metadata overlapping other metadata
 * or the header; L2 entries pointing into refcount structures; compressed descriptors with bad
 * lengths. Each is opened (read-only and read-write), read, written, flushed, checked and closed
 * under a timeout. Allowed outcomes: data, or an IOException with a message. Not allowed: any
 * other exception (NPE, IndexOutOfBounds, ArithmeticException, OOM...), a hang, or a data write
 * landing on a cluster the image's own tables mark as live metadata.
 */
final class HostileImages {
    enum Verdict { OK, REJECTED, CRASH, HANG, OVERWRITE }

    record Outcome(Verdict verdict, String detail) {}

    /** A valid image and where its metadata lives. */
    record Seed(String name, byte[] bytes) {}

    static final long TIMEOUT_MS = 10_000;

    private final ExecutorService pool = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "hostile-image");
        t.setDaemon(true);
        return t;
    });

    // ------------------------------------------------------------------ seeds

    static List<Seed> seeds(Path scratch) throws IOException {
        List<Seed> out = new ArrayList<>();
        // cluster size, version, refcount bits, extended L2 entries (1: on)
        int[][] shapes = {{512, 3, 16, 0}, {4096, 3, 64, 0}, {65536, 3, 16, 0}, {65536, 2, 16, 0}, {4096, 3, 1, 0},
                {16384, 3, 16, 1}, {65536, 3, 16, 1}};
        for (int[] s : shapes) {
            MemoryBackend m = new MemoryBackend();
            CreateOptions o = CreateOptions.defaults(4L << 20).withClusterSize(s[0]).withVersion(s[1]).withRefcountBits(s[2])
                    .withExtendedL2(s[3] == 1);
            Qcow2Image.create(m, o);
            try (Qcow2Image img = Qcow2Image.open(m, OpenOptions.defaults()); Arena a = Arena.ofConfined()) {
                MemorySegment buf = a.allocate(65536, 4096);
                Random r = new Random(s[0] + s[1]);
                for (int i = 0; i < 12; i++) {
                    long off = (r.nextLong(4L << 20) - 65536) & ~511L;
                    SectorTags.fill(buf, i, Math.max(0, off) / 512);
                    img.write(Math.max(0, off), buf);
                }
                img.writeZeroes(1L << 20, 3L * s[0], false);
                img.discard(2L << 20, 4L * s[0]);
                if (s[3] == 1) { // subclusters: partly allocated, zero and unallocated ones in one cluster
                    for (int i = 0; i < 8; i++) {
                        long off = (3L << 20) + i * (long) s[0] + (i % 3) * (s[0] / 32) + 512L * i;
                        SectorTags.fill(buf.asSlice(0, 1536), 100 + i, off / 512);
                        img.write(off, buf.asSlice(0, 1536));
                        img.writeZeroes(off + s[0] / 4, s[0] / 16, false);
                    }
                }
            }
            out.add(new Seed("engine-" + Workload.sizeName(s[0]) + "-v" + s[1] + "-rc" + s[2] + (s[3] == 1 ? "-extl2" : ""), m.snapshot()));
        }
        if (scratch != null && QemuImgCheck.available()) {
            // compressed clusters come from qemu-img convert -c
            Path raw = scratch.resolve("hostile-src.raw"), q = scratch.resolve("hostile-compressed.qcow2");
            byte[] data = new byte[1 << 20];
            Random r = new Random(5);
            for (int i = 0; i < data.length; i += 4096) if (r.nextInt(3) > 0) for (int j = 0; j < 4096; j++) data[i + j] = (byte) ((i / 4096) * 7 + (j % 13 == 0 ? r.nextInt(256) : 0));
            Files.write(raw, data);
            try {
                Process p = new ProcessBuilder("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", raw.toString(), q.toString())
                        .redirectErrorStream(true).start();
                p.getInputStream().readAllBytes();
                if (p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0) out.add(new Seed("qemu-compressed-4k", Files.readAllBytes(q)));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                Files.deleteIfExists(raw);
                Files.deleteIfExists(q);
            }
        }
        return out;
    }

    // ------------------------------------------------------------------ layout (independent parse)

    /** Live metadata clusters by an independent parse: cluster offset → what it holds. */
    static TreeMap<Long, String> liveMetadata(byte[] img) {
        TreeMap<Long, String> m = new TreeMap<>();
        ByteBuffer b = ByteBuffer.wrap(img);
        if (img.length < 72) return m;
        int bits = b.getInt(20);
        if (bits < 9 || bits > 21) return m;
        long cs = 1L << bits;
        m.put(0L, "header");
        long l1Off = b.getLong(40);
        long l1Size = Integer.toUnsignedLong(b.getInt(36));
        long rtOff = b.getLong(48);
        long rtClusters = Integer.toUnsignedLong(b.getInt(56));
        for (long c = 0; c * cs < l1Size * 8 && c < 4096; c++) put(m, l1Off + c * cs, cs, "L1 table");
        for (long c = 0; c < rtClusters && c < 4096; c++) put(m, rtOff + c * cs, cs, "refcount table");
        for (long i = 0; i < l1Size && i < 1 << 20; i++) {
            long p = l1Off + 8 * i;
            if (p < 0 || p + 8 > img.length) break;
            long l2 = b.getLong((int) p) & 0x00fffffffffffe00L;
            if (l2 != 0) put(m, l2, cs, "L2 table");
        }
        for (long i = 0; i < rtClusters * cs / 8 && i < 1 << 20; i++) {
            long p = rtOff + 8 * i;
            if (p < 0 || p + 8 > img.length) break;
            long rb = b.getLong((int) p) & ~511L;
            if (rb != 0) put(m, rb, cs, "refcount block");
        }
        return m;
    }

    private static void put(TreeMap<Long, String> m, long off, long cs, String what) {
        if (off >= 0) m.putIfAbsent(off / cs * cs, what);
    }

    // ------------------------------------------------------------------ mutations

    /** Applies 1–3 random mutations; returns their description. */
    static String mutate(byte[] img, Random r) {
        StringBuilder d = new StringBuilder();
        int n = 1 + r.nextInt(3);
        for (int i = 0; i < n; i++) {
            String m;
            try {
                m = mutateOnce(img, r);
            } catch (IndexOutOfBoundsException e) { // an earlier mutation moved a table out of the file
                m = "(mutation skipped: table outside the file)";
            }
            d.append(i == 0 ? "" : "; ").append(m);
        }
        return d.toString();
    }

    private static String mutateOnce(byte[] img, Random r) {
        ByteBuffer b = ByteBuffer.wrap(img);
        int bits = b.getInt(20);
        long cs = 1L << bits;
        long l1Off = b.getLong(40), rtOff = b.getLong(48);
        int l1Size = b.getInt(36);
        List<Long> l2s = new ArrayList<>(), rbs = new ArrayList<>();
        for (int i = 0; i < l1Size; i++) { long e = b.getLong((int) (l1Off + 8L * i)) & 0x00fffffffffffe00L; if (e != 0) l2s.add(e); }
        for (int i = 0; i < cs / 8; i++) { long e = b.getLong((int) (rtOff + 8L * i)) & ~511L; if (e != 0) rbs.add(e); }
        long eof = img.length;
        long[] bad = {eof, eof + cs, (eof / cs + 1000) * cs, 1L << 55, (1L << 56) - cs, 0, cs, l1Off, rtOff,
                rbs.isEmpty() ? 0 : rbs.get(0), l2s.isEmpty() ? 0 : l2s.get(0), Long.MAX_VALUE & ~(cs - 1), -cs};
        long pick = bad[r.nextInt(bad.length)];
        boolean extL2 = (b.getLong(72) & (1L << 4)) != 0 && b.getInt(4) >= 3;
        switch (r.nextInt(extL2 ? 14 : 12)) {
            case 0 -> { int p = r.nextInt(Math.min(img.length, 104)); int bit = r.nextInt(8); img[p] ^= (byte) (1 << bit); return "header byte " + p + " bit " + bit + " flipped"; }
            case 1 -> { int i = r.nextInt(Math.max(1, l1Size)); int bit = r.nextInt(64); flip(b, l1Off + 8L * i, bit); return "L1[" + i + "] bit " + bit + " flipped"; }
            case 2 -> {
                if (l2s.isEmpty()) return "no L2 table";
                long t = l2s.get(r.nextInt(l2s.size()));
                int i = r.nextInt((int) (cs / 8)); int bit = r.nextInt(64);
                flip(b, t + 8L * i, bit);
                return "L2 at " + t + " entry " + i + " bit " + bit + " flipped";
            }
            case 3 -> {
                long t = rbs.isEmpty() ? rtOff : rbs.get(r.nextInt(rbs.size()));
                long p = t + r.nextInt((int) cs); int bit = r.nextInt(8);
                img[(int) p] ^= (byte) (1 << bit);
                return "refcount block at " + t + " byte " + (p - t) + " bit " + bit + " flipped";
            }
            case 4 -> { int i = r.nextInt(4); int bit = r.nextInt(64); flip(b, rtOff + 8L * i, bit); return "refcount table[" + i + "] bit " + bit + " flipped"; }
            case 5 -> {
                long[] sizes = {Long.MAX_VALUE, 1L << 62, (1L << 61) + 512, -512, 1L << 63 >>> 1, (1L << 61) - 1};
                long s = sizes[r.nextInt(sizes.length)];
                b.putLong(24, s);
                return "virtual size " + s;
            }
            case 6 -> {
                int f = r.nextInt(4);
                switch (f) {
                    case 0 -> b.putLong(40, pick);
                    case 1 -> b.putLong(48, pick);
                    case 2 -> b.putInt(36, new int[] {Integer.MAX_VALUE, -1, 1 << 22, l1Size * 64 + 1}[r.nextInt(4)]);
                    default -> b.putInt(56, new int[] {Integer.MAX_VALUE, -1, 1 << 20, 0}[r.nextInt(4)]);
                }
                return "header table field " + new String[] {"l1_table_offset", "refcount_table_offset", "l1_size", "refcount_table_clusters"}[f] + " changed (" + pick + ")";
            }
            case 7 -> {
                int i = r.nextInt(Math.max(1, l1Size));
                b.putLong((int) (l1Off + 8L * i), pick | (r.nextBoolean() ? 1L << 63 : 0));
                return "L1[" + i + "] -> " + pick;
            }
            case 8 -> {
                int i = r.nextInt(4);
                b.putLong((int) (rtOff + 8L * i), pick);
                return "refcount table[" + i + "] -> " + pick;
            }
            case 9, 10 -> {
                if (l2s.isEmpty()) return "no L2 table";
                long t = l2s.get(r.nextInt(l2s.size()));
                int i = r.nextInt((int) Math.min(cs / 8, 64));
                long target = r.nextBoolean() ? pick : (rbs.isEmpty() ? rtOff : rbs.get(0));
                b.putLong((int) (t + 8L * i), (target & 0x00fffffffffffe00L) | (1L << 63));
                return "L2 at " + t + " entry " + i + " -> " + target + " (copied)";
            }
            case 12, 13 -> { // extended L2: a subcluster bitmap with alloc and zero bits in any combination
                if (l2s.isEmpty()) return "no L2 table";
                long t = l2s.get(r.nextInt(l2s.size()));
                int i = r.nextInt((int) Math.min(cs / 16, 64));
                long[] maps = {-1L, 0xffffffffL, 0xffffffffL << 32, 1L | (1L << 32), r.nextLong(), 0x5555555555555555L};
                long bm = maps[r.nextInt(maps.length)];
                b.putLong((int) (t + 16L * i + 8), bm);
                return "L2 at " + t + " extended entry " + i + " bitmap -> " + Long.toHexString(bm);
            }
            default -> {
                if (l2s.isEmpty()) return "no L2 table";
                long t = l2s.get(r.nextInt(l2s.size()));
                int i = r.nextInt((int) Math.min(cs / 8, 64));
                int x = 62 - (bits - 8);
                long sectors = r.nextBoolean() ? (1L << (62 - x)) - 1 : r.nextInt(4);
                long off = r.nextBoolean() ? pick : r.nextLong(Math.max(1, eof));
                long e = (1L << 62) | (sectors << x) | (off & ((1L << x) - 1));
                b.putLong((int) (t + 8L * i), e);
                return "L2 at " + t + " entry " + i + " -> compressed at " + (off & ((1L << x) - 1)) + " with " + (sectors + 1) + " sectors";
            }
        }
    }

    private static void flip(ByteBuffer b, long pos, int bit) {
        if (pos < 0 || pos + 8 > b.capacity()) return;
        b.putLong((int) pos, b.getLong((int) pos) ^ (1L << bit));
    }

    // ------------------------------------------------------------------ exercise

    Outcome exercise(byte[] image, long seed) {
        Future<Outcome> f = pool.submit(() -> exerciseUnbounded(image, seed));
        try {
            return f.get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            f.cancel(true);
            return new Outcome(Verdict.HANG, "no answer within " + TIMEOUT_MS + " ms");
        } catch (ExecutionException e) {
            return new Outcome(Verdict.CRASH, e.getCause().toString() + (e.getCause().getStackTrace().length > 0 ? " at " + e.getCause().getStackTrace()[0] : ""));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new Outcome(Verdict.HANG, "interrupted");
        }
    }

    private Outcome exerciseUnbounded(byte[] image, long seed) {
        Random r = new Random(seed);
        String stage = "open read-only";
        boolean rejected = false;
        try {
            // 1. read-only: open, read, map, check
            try (Qcow2Image img = Qcow2Image.open(new MemoryBackend(image.clone(), image.length), OpenOptions.defaults().withReadOnly(true).withCacheBytes(1 << 20))) {
                stage = "read";
                readSome(img, r);
                stage = "map";
                img.map(0, Math.min(img.virtualSize(), 64L << 20));
                stage = "check";
                img.check(RepairMode.NONE);
            } catch (IOException e) {
                if (blank(e)) return new Outcome(Verdict.CRASH, stage + ": IOException without a message: " + e);
                rejected = true;
            }
            // 2. read-write: data writes must stay off live metadata
            TreeMap<Long, String> live = liveMetadata(image);
            int cs = 1 << Math.max(9, Math.min(21, ByteBuffer.wrap(image).getInt(20)));
            MemoryBackend mem = new MemoryBackend(image.clone(), image.length);
            RecordingBackend rec = new RecordingBackend(mem);
            stage = "open read-write";
            Qcow2Image img;
            try {
                img = Qcow2Image.open(rec, OpenOptions.defaults().withCacheBytes(256L << 20));
            } catch (IOException e) {
                if (blank(e)) return new Outcome(Verdict.CRASH, stage + ": IOException without a message: " + e);
                return new Outcome(Verdict.REJECTED, e.getMessage());
            }
            try {
                try (Arena a = Arena.ofConfined()) {
                    MemorySegment buf = a.allocate(8192, 4096);
                    long vs = img.virtualSize();
                    for (int i = 0; i < 6; i++) {
                        stage = "write " + i;
                        long off = (i < 3 ? r.nextLong(Math.max(1, Math.min(vs, 4L << 20))) : r.nextLong(Math.max(1, vs))) & ~511L;
                        long len = Math.min(buf.byteSize(), vs - off) & ~511L;
                        if (len <= 0) continue;
                        SectorTags.fill(buf.asSlice(0, len), i, off / 512);
                        int before = rec.logSize();
                        try {
                            img.write(off, buf.asSlice(0, len));
                        } catch (IOException e) {
                            if (blank(e)) return new Outcome(Verdict.CRASH, stage + ": IOException without a message: " + e);
                            rejected = true;
                        }
                        List<IoEvent> log = rec.log();
                        for (int k = before; k < log.size(); k++) {
                            IoEvent ev = log.get(k);
                            if (ev.kind() != IoEvent.Kind.WRITE) continue;
                            String hit = overlap(live, ev, cs);
                            if (hit != null) return new Outcome(Verdict.OVERWRITE, "guest write at " + off + " wrote " + ev.length() + " bytes at file offset " + ev.offset() + " over the " + hit);
                        }
                    }
                    stage = "flush";
                    try {
                        img.flush();
                    } catch (IOException e) {
                        if (blank(e)) return new Outcome(Verdict.CRASH, stage + ": IOException without a message: " + e);
                        rejected = true;
                    }
                    stage = "read back";
                    try {
                        readSome(img, r);
                        stage = "check with repair";
                        img.check(RepairMode.ALL);
                    } catch (IOException e) {
                        if (blank(e)) return new Outcome(Verdict.CRASH, stage + ": IOException without a message: " + e);
                        rejected = true;
                    }
                }
            } finally {
                stage = "close";
                try {
                    img.close();
                } catch (IOException e) {
                    rejected = true;
                }
            }
            return new Outcome(rejected ? Verdict.REJECTED : Verdict.OK, null);
        } catch (RuntimeException | Error e) {
            StackTraceElement[] st = e.getStackTrace();
            StringBuilder at = new StringBuilder();
            for (int i = 0; i < Math.min(4, st.length); i++) at.append(" at ").append(st[i]);
            return new Outcome(Verdict.CRASH, stage + ": " + e + at);
        }
    }

    private static boolean blank(IOException e) {
        return e.getMessage() == null || e.getMessage().isBlank();
    }

    /** The live metadata cluster a data write hits, except the header's feature bits (corrupt flag). */
    private static String overlap(TreeMap<Long, String> live, IoEvent ev, int cs) {
        long end = ev.offset() + ev.length();
        if (ev.offset() >= 72 && end <= 96) return null;
        for (long c = ev.offset() / cs * cs; c < end; c += cs) {
            String k = live.get(c);
            if (k != null) return k + " at " + c;
        }
        return null;
    }

    private static void readSome(Qcow2Image img, Random r) throws IOException {
        long vs = img.virtualSize();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(1 << 20, 4096);
            for (long off = 0; off < Math.min(vs, 8L << 20); off += buf.byteSize()) img.read(off, buf.asSlice(0, Math.min(buf.byteSize(), vs - off)));
            for (int i = 0; i < 8 && vs > 0; i++) {
                long off = r.nextLong(vs);
                img.read(off, buf.asSlice(0, Math.min(65536, vs - off)));
            }
        }
    }

    void close() {
        pool.shutdownNow();
    }

    // ------------------------------------------------------------------ command line

    long tried, crashes, hangs, overwrites, rejected;

    Outcome tryOne(List<Seed> seeds, long seed, PrintStream out) {
        Random r = new Random(seed);
        Seed s = seeds.get(r.nextInt(seeds.size()));
        byte[] img = s.bytes().clone();
        String what = mutate(img, r);
        Outcome o = exercise(img, r.nextLong());
        tried++;
        switch (o.verdict()) {
            case CRASH -> crashes++;
            case HANG -> hangs++;
            case OVERWRITE -> overwrites++;
            case REJECTED -> rejected++;
            default -> {}
        }
        if (o.verdict() == Verdict.CRASH || o.verdict() == Verdict.HANG || o.verdict() == Verdict.OVERWRITE)
            out.println("  " + o.verdict() + " " + s.name() + " example-seed=" + seed + " [" + what + "]: " + o.detail());
        return o;
    }

    String summary() {
        return "hostile-images: tried=" + tried + " crashes=" + crashes + " hangs=" + hangs;
    }

    public static void main(String[] args) throws Exception {
        long n = 2000, seed = System.nanoTime() & 0xffffffL;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--images" -> n = Long.parseLong(args[++i]);
                case "--seed" -> seed = Long.parseLong(args[++i]);
                default -> {
                    System.err.println("usage: HostileImages [--images N] [--seed S]");
                    System.exit(2);
                }
            }
        }
        Path scratch = Files.createTempDirectory(QemuImgCheck.scratchDir(), "qblk-hostile");
        List<Seed> seeds = seeds(scratch);
        Files.deleteIfExists(scratch);
        HostileImages h = new HostileImages();
        System.out.println("hostile: seed=" + seed + " seeds=" + seeds.stream().map(Seed::name).toList());
        Random r = new Random(seed);
        for (long i = 0; i < n; i++) h.tryOne(seeds, r.nextLong(), System.out);
        h.close();
        System.out.println("hostile: rejected with a clear error=" + h.rejected + " overwrote live metadata=" + h.overwrites);
        System.out.println(h.summary());
        System.exit(h.crashes + h.hangs + h.overwrites == 0 ? 0 : 1);
    }
}
