package io.qblk.faults;

import io.qblk.qcow2.CompressionType;
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
        out.add(new Seed("engine-zstd-4k", zstdImage()));
        out.add(new Seed("engine-lazy-dirty-4k", lazyDirtyImage()));
        if (scratch != null && QemuImgCheck.available()) {
            // compressed clusters come from qemu-img convert -c
            Path raw = scratch.resolve("hostile-src.raw"), q = scratch.resolve("hostile-compressed.qcow2");
            byte[] data = new byte[1 << 20];
            Random r = new Random(5);
            for (int i = 0; i < data.length; i += 4096) if (r.nextInt(3) > 0) for (int j = 0; j < 4096; j++) data[i + j] = (byte) ((i / 4096) * 7 + (j % 13 == 0 ? r.nextInt(256) : 0));
            Files.write(raw, data);
            try {
                for (String type : new String[] {"zlib", "zstd"}) {
                    Files.deleteIfExists(q);
                    Process p = new ProcessBuilder("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096,compression_type=" + type,
                            raw.toString(), q.toString()).redirectErrorStream(true).start();
                    p.getInputStream().readAllBytes();
                    if (p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0)
                        out.add(new Seed(type.equals("zlib") ? "qemu-compressed-4k" : "qemu-zstd-4k", Files.readAllBytes(q)));
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                Files.deleteIfExists(raw);
                Files.deleteIfExists(q);
            }
        }
        return out;
    }

    /**
     * Lazy refcounts (docs/ordering.md L1-L3): what a write-through writer leaves when it dies with the
     * image open: the dirty bit set and refcount blocks behind the L2 tables. A read-write open must
     * repair it (or, mutated, refuse it with a message).
     */
    static byte[] lazyDirtyImage() throws IOException {
        MemoryBackend m = new MemoryBackend();
        Qcow2Image.create(m, CreateOptions.defaults(4L << 20).withClusterSize(4096).withLazyRefcounts(true));
        Qcow2Image img = Qcow2Image.open(m, OpenOptions.defaults().withMetadataWrite(io.qblk.qcow2.MetadataWrite.WRITETHROUGH));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(16384, 4096);
            Random r = new Random(15);
            for (int i = 0; i < 12; i++) {
                long off = r.nextLong((4L << 20) - 16384) & ~511L;
                SectorTags.fill(buf, i, off / 512);
                img.write(off, buf);
            }
            img.discard(2L << 20, 8192);
            byte[] dirty = m.snapshot();
            if (!io.qblk.qcow2.Qcow2Header.dirtyBitSet(m)) throw new IOException("lazy seed: the dirty bit is not set");
            return dirty;
        } finally {
            img.close();
        }
    }

    /**
     * Images with persistent dirty bitmaps made by qemu (two enabled with data clusters, one
     * disabled), for {@link #mutateBitmaps}; empty when qemu-img is missing (the caller says so).
     */
    static List<Seed> bitmapSeeds(Path scratch) throws IOException {
        List<Seed> out = new ArrayList<>();
        if (!QemuImgCheck.available()) return out;
        for (int cs : new int[] {4096, 65536}) {
            Path q = scratch.resolve("hostile-bitmaps-" + cs + ".qcow2");
            String f = q.toString();
            String[][] cmds = {
                {"qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=" + cs, f, "4M"},
                {"qemu-img", "bitmap", "--add", f, "b0"},
                {"qemu-img", "bitmap", "--add", "-g", String.valueOf(4 * cs), f, "b1"},
                {"qemu-img", "bitmap", "--add", "--disable", f, "off"},
                {"qemu-io", "-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 1M 8k", "-c", "write -z 3M 4k", f}};
            try {
                for (String[] c : cmds) {
                    Process p = new ProcessBuilder(c).redirectErrorStream(true).start();
                    p.getInputStream().readAllBytes();
                    if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) throw new IOException(String.join(" ", c) + " failed");
                }
                out.add(new Seed("qemu-bitmaps-" + Workload.sizeName(cs), Files.readAllBytes(q)));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                Files.deleteIfExists(q);
            }
        }
        return out;
    }

    /** A 1 MiB image (4 KiB clusters) whose every cluster the engine wrote zstd-compressed (byte i of cluster k: i % 61 + k). */
    static byte[] zstdImage() throws IOException {
        MemoryBackend m = new MemoryBackend();
        Qcow2Image.create(m, CreateOptions.defaults(1L << 20).withClusterSize(4096).withCompression(CompressionType.ZSTD));
        try (Qcow2Image img = Qcow2Image.open(m, OpenOptions.defaults()); Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096);
            for (long off = 0; off < (1L << 20); off += 4096) {
                for (int i = 0; i < 4096; i++) buf.set(java.lang.foreign.ValueLayout.JAVA_BYTE, i, (byte) ((i % 61) + off / 4096));
                if (!img.writeCompressed(off, buf)) throw new AssertionError("cluster at " + off + " did not compress");
            }
        }
        return m.snapshot();
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
        long[] bx = bitmapsExtension(img);
        if (bx != null && (b.getLong(88) & 1) != 0 && bx[2] > 0 && bx[2] + bx[1] <= img.length) {
            for (long c = 0; c * cs < bx[1]; c++) put(m, bx[2] + c * cs, cs, "bitmap directory");
            long pos = bx[2];
            for (int i = 0; i < bx[0] && pos + 24 <= bx[2] + bx[1]; i++) {
                long table = b.getLong((int) pos);
                long size = Integer.toUnsignedLong(b.getInt((int) pos + 8));
                for (long c = 0; c * cs < size * 8 && table > 0 && table + c * cs < img.length; c++) put(m, table + c * cs, cs, "bitmap table");
                for (long k = 0; k < size && table > 0 && table + 8 * k + 8 <= img.length; k++) {
                    long d = b.getLong((int) (table + 8 * k)) & 0x00fffffffffffe00L;
                    if (d != 0) put(m, d, cs, "bitmap data");
                }
                pos += (24 + Integer.toUnsignedLong(b.getInt((int) pos + 20)) + (b.getShort((int) pos + 18) & 0xffff) + 7) & ~7L;
            }
        }
        return m;
    }

    /** {nb_bitmaps, directory size, directory offset, position of the extension's data}, or null. */
    static long[] bitmapsExtension(byte[] img) {
        ByteBuffer b = ByteBuffer.wrap(img);
        if (img.length < 104 || b.getInt(4) < 3) return null;
        int pos = b.getInt(100);
        while (pos > 0 && pos + 8 <= Math.min(img.length, 1 << 21)) {
            int type = b.getInt(pos), len = b.getInt(pos + 4);
            if (type == 0 || len < 0) return null;
            if (type == 0x23852875 && len >= 24 && pos + 8 + 24 <= img.length)
                return new long[] {Integer.toUnsignedLong(b.getInt(pos + 8)), b.getLong(pos + 16), b.getLong(pos + 24), pos + 8};
            pos += 8 + ((len + 7) & ~7);
        }
        return null;
    }

    /** Applies 1-3 mutations to the bitmaps of an image from {@link #bitmapSeeds}, sometimes one of {@link #mutate}. */
    static String mutateBitmaps(byte[] img, Random r) {
        StringBuilder d = new StringBuilder();
        int n = 1 + r.nextInt(3);
        for (int i = 0; i < n; i++) d.append(i == 0 ? "" : "; ").append(r.nextInt(5) == 0 ? mutate(img, r) : mutateBitmapOnce(img, r));
        return d.toString();
    }

    private static String mutateBitmapOnce(byte[] img, Random r) {
        ByteBuffer b = ByteBuffer.wrap(img);
        long[] bx = bitmapsExtension(img);
        if (bx == null) return "no bitmaps extension";
        long cs = 1L << b.getInt(20);
        int ext = (int) bx[3];
        long dir = bx[2];
        if (dir <= 0 || dir + 24 > img.length) return "directory outside the file";
        long eof = img.length;
        long[] bad = {0, eof, eof + cs, 1L << 55, cs, b.getLong(40), b.getLong(48), dir, -cs, 511, Long.MAX_VALUE & ~(cs - 1)};
        long pick = bad[r.nextInt(bad.length)];
        // entry of bitmap k
        int k = r.nextInt((int) Math.max(1, Math.min(bx[0], 3)));
        long pos = dir;
        for (int i = 0; i < k && pos + 24 <= eof; i++) pos += (24 + Integer.toUnsignedLong(b.getInt((int) pos + 20)) + (b.getShort((int) pos + 18) & 0xffff) + 7) & ~7L;
        if (pos + 24 > eof) return "entry outside the file";
        int p = (int) pos;
        long table = b.getLong(p);
        switch (r.nextInt(10)) {
            case 0 -> { int f = r.nextInt(3); long[] v = {new int[] {0, 65536, -1, 4}[r.nextInt(4)], new long[] {0, 1, eof, 1L << 40}[r.nextInt(4)], pick};
                if (f == 0) b.putInt(ext, (int) v[0]); else b.putLong(ext + 8 * f, v[f]);
                return "bitmaps extension field " + f + " changed"; }
            case 1 -> { long q = dir + r.nextInt((int) Math.max(1, Math.min(bx[1], eof - dir))); /* an earlier mutation may have zeroed the size */ int bit = r.nextInt(8); img[(int) q] ^= (byte) (1 << bit); return "directory byte " + (q - dir) + " bit " + bit + " flipped"; }
            case 2 -> { b.putLong(p, pick); return "bitmap " + k + " table offset -> " + pick; }
            case 3 -> { int v = new int[] {0, 2, -1, 1 << 24}[r.nextInt(4)]; b.putInt(p + 8, v); return "bitmap " + k + " table size -> " + v; }
            case 4 -> { int v = new int[] {1, 3, 8, 0x10, -1}[r.nextInt(5)]; b.putInt(p + 12, v); return "bitmap " + k + " flags -> " + v; }
            case 5 -> { int v = new int[] {0, 8, 32, 63, 255}[r.nextInt(5)]; img[p + 17] = (byte) v; return "bitmap " + k + " granularity bits -> " + v; }
            case 6 -> { int v = new int[] {0, 1024, 65535, 200}[r.nextInt(4)]; b.putShort(p + 18, (short) v); return "bitmap " + k + " name size -> " + v; }
            case 7 -> { int v = new int[] {8, -1, 1 << 20}[r.nextInt(3)]; b.putInt(p + 20, v); return "bitmap " + k + " extra data size -> " + v; }
            default -> {
                if (table <= 0 || table + 8 > eof) return "table outside the file";
                long v = switch (r.nextInt(4)) {
                    case 0 -> pick & 0x00fffffffffffe00L;
                    case 1 -> pick | 1;
                    case 2 -> 0x2L;
                    default -> b.getLong(40);
                };
                b.putLong((int) table, v);
                return "bitmap " + k + " table entry 0 -> 0x" + Long.toHexString(v);
            }
        }
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
        // an earlier mutation of the same image may have changed cluster_bits: keep the bounds below positive
        long cs = 1L << Math.min(Math.max(bits, 9), 21);
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
            try (Qcow2Image img = Qcow2Image.open(new MemoryBackend(image), OpenOptions.defaults().withReadOnly(true).withCacheBytes(1 << 20))) {
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
            boolean dirty = image.length >= 80 && ByteBuffer.wrap(image).getInt(4) >= 3 && (ByteBuffer.wrap(image).getLong(72) & 1) != 0;
            int cs = 1 << Math.max(9, Math.min(21, ByteBuffer.wrap(image).getInt(20)));
            MemoryBackend mem = new MemoryBackend(image);
            RecordingBackend rec = new RecordingBackend(mem);
            stage = "open read-write";
            Qcow2Image img;
            try {
                img = Qcow2Image.open(rec, OpenOptions.defaults().withCacheBytes(256L << 20));
            } catch (IOException e) {
                if (blank(e)) return new Outcome(Verdict.CRASH, stage + ": IOException without a message: " + e);
                return new Outcome(Verdict.REJECTED, e.getMessage());
            }
            // a dirty image was repaired by the open (a rebuilt refcount structure frees the old one): its layout now
            if (dirty) live = liveMetadata(mem.snapshot());
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

    /** The live metadata cluster a data write hits, except the header's feature bits (corrupt flag) and the bitmap directory. */
    private static String overlap(TreeMap<Long, String> live, IoEvent ev, int cs) {
        long end = ev.offset() + ev.length();
        if (ev.offset() >= 72 && end <= 96) return null;
        for (long c = ev.offset() / cs * cs; c < end; c += cs) {
            String k = live.get(c);
            // the directory is rewritten in place when a write marks the bitmaps in use (rule B1)
            if (k != null && !k.equals("bitmap directory")) return k + " at " + c;
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
        Long example = null; // one example-seed of a failure line, alone
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--images" -> n = Long.parseLong(args[++i]);
                case "--seed" -> seed = Long.parseLong(args[++i]);
                case "--example" -> example = Long.parseLong(args[++i]);
                default -> {
                    System.err.println("usage: HostileImages [--images N] [--seed S] [--example EXAMPLE_SEED]");
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
        if (example != null) {
            long t0 = System.nanoTime();
            HostileImages.Outcome o = h.tryOne(seeds, example, System.out);
            System.out.printf("hostile: example-seed=%d %s in %.1f s%n", example, o.verdict(), (System.nanoTime() - t0) / 1e9);
        } else for (long i = 0; i < n; i++) h.tryOne(seeds, r.nextLong(), System.out);
        h.close();
        System.out.println("hostile: rejected with a clear error=" + h.rejected + " overwrote live metadata=" + h.overwrites);
        System.out.println(h.summary());
        System.exit(h.crashes + h.hangs + h.overwrites == 0 ? 0 : 1);
    }
}
