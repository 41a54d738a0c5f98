package io.qblk.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.qblk.cli.QblkRunner;
import io.qblk.cli.QemuTools;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * Interop both ways for every qemu-img create option value: images made by {@code qemu-img create} and
 * written by {@code qemu-io} read correctly through the engine; what the engine writes reads correctly
 * with {@code qemu-io read -P} and passes {@code qemu-img check}; {@code qblk info/map --output=json}
 * agree with qemu-img's on the same image.
 */
class QemuInteropTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long SIZE = 8L << 20;

    @TempDir
    Path dir;

    record Opts(String compat, String clusterSize, int refcountBits, boolean lazy, String prealloc) {
        String qemuOptions() {
            return "compat=" + compat + ",cluster_size=" + clusterSize + ",refcount_bits=" + refcountBits
                    + ",lazy_refcounts=" + (lazy ? "on" : "off") + ",preallocation=" + prealloc;
        }
        @Override public String toString() { return qemuOptions(); }
    }

    /** Each value of each option appears at least once, combined with different values of the others. */
    static Stream<Opts> combinations() {
        return Stream.of(
                new Opts("1.1", "64k", 16, false, "off"),
                new Opts("0.10", "64k", 16, false, "off"),
                new Opts("0.10", "512", 16, false, "metadata"),
                new Opts("0.10", "2M", 16, false, "falloc"),
                new Opts("1.1", "512", 1, true, "off"),
                new Opts("1.1", "4k", 2, false, "metadata"),
                new Opts("1.1", "8k", 4, true, "falloc"),
                new Opts("1.1", "16k", 8, false, "full"),
                new Opts("1.1", "32k", 32, true, "metadata"),
                new Opts("1.1", "128k", 64, false, "off"),
                new Opts("1.1", "2M", 64, true, "full"),
                new Opts("1.1", "1M", 16, true, "metadata"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("combinations")
    void qemuWritesEngineReadsAndViceVersa(Opts o) throws Exception {
        Path img = dir.resolve("i.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", o.qemuOptions(), img.toString(), String.valueOf(SIZE)).expect(0);
        // qemu-io writes: a pattern at 0, an unaligned span crossing clusters, zeroes over data, a discard.
        QemuTools.qemuIo(img, false,
                "write -P 0x11 0 4k",
                "write -P 0x22 1536 70k",
                "write -P 0x33 3M 1M",
                "write -z 3M 64k",
                "write -P 0x44 7M 1M",
                "discard 7M 512k").expect(0);
        byte[] expect = new byte[(int) SIZE];
        fill(expect, 0, 4096, 0x11);
        fill(expect, 1536, 70 * 1024, 0x22);
        fill(expect, 3 << 20, 1 << 20, 0x33);
        fill(expect, 3 << 20, 64 * 1024, 0);
        fill(expect, 7 << 20, 1 << 20, 0x44);
        // the discarded range: qemu zeroes whole clusters, keeps partial ones; read it back from qemu's view
        byte[] discarded = qemuRead(img, 7 << 20, 512 * 1024);
        System.arraycopy(discarded, 0, expect, 7 << 20, discarded.length);

        compareJson(img);

        try (Qcow2Image e = Qcow2Image.open(img, OpenOptions.defaults().withReadOnly(true));
             Arena a = Arena.ofConfined()) {
            MemorySegment all = a.allocate(SIZE, 4096);
            e.read(0, all);
            byte[] got = all.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
            assertEquals(-1, java.util.Arrays.mismatch(expect, got), "engine read of qemu image differs at offset");
            assertTrue(e.check(RepairMode.NONE).clean(), "engine check of qemu image");
        }

        // Engine writes; qemu-io must read them back and qemu-img check must be clean.
        try (Qcow2Image e = Qcow2Image.open(img, OpenOptions.defaults()); Arena a = Arena.ofConfined()) {
            e.write(0, seg(a, 512, 0x55));
            e.write(5 << 20, seg(a, 300 * 1024, 0x66));
            e.write((3 << 20) + 4096, seg(a, 4096, 0x77));
            e.writeZeroes(1536, 8192, false);
            e.discard(6 << 20, 1 << 20);
            e.write(SIZE - 1024, seg(a, 1024, 0x88));
            e.flush();
        }
        QemuTools.qemuIo(img, true,
                "read -P 0x55 0 512",
                "read -P 0x11 512 1024",
                "read -P 0 1536 8k",
                "read -P 0x22 9728 63488",
                "read -P 0x66 5M 300k",
                "read -P 0 3M 4k",
                "read -P 0x77 3149824 4k",
                "read -P 0 3153920 57344",
                "read -P 0x33 3211264 983040",
                "read -P 0 6M 1M",
                "read -P 0x88 8387584 1k").expect(0);
        QemuTools.Result check = QemuTools.run("qemu-img", "check", img.toString());
        assertEquals(0, check.exitCode(), check.out() + check.err());
        compareJson(img);
    }

    /** qblk info/map --output=json against qemu-img's on the same image. */
    private void compareJson(Path img) throws IOException {
        JsonNode qInfo = JSON.readTree(QemuTools.run("qemu-img", "info", "--output=json", img.toString()).expect(0).out());
        JsonNode mInfo = JSON.readTree(qblk("info", "--output=json", img.toString()));
        for (String k : List.of("virtual-size", "filename", "cluster-size", "format", "dirty-flag"))
            assertEquals(qInfo.get(k), mInfo.get(k), "info " + k);
        assertEquals(qInfo.get("format-specific"), mInfo.get("format-specific"), "info format-specific");
        JsonNode qMap = JSON.readTree(QemuTools.run("qemu-img", "map", "--output=json", img.toString()).expect(0).out());
        JsonNode mMap = JSON.readTree(qblk("map", "--output=json", img.toString()));
        List<String> q = normalize(qMap), m = normalize(mMap);
        if (!q.equals(m)) {
            int i = 0;
            while (i < Math.min(q.size(), m.size()) && q.get(i).equals(m.get(i))) i++;
            throw new AssertionError("map differs at entry " + i + " of " + q.size() + "/" + m.size() + ": qemu "
                    + (i < q.size() ? q.get(i) : "-") + " qblk " + (i < m.size() ? m.get(i) : "-"));
        }
    }

    /** Joins neighbouring map entries of the same kind, so a split at a different point does not count. */
    private static List<String> normalize(JsonNode map) {
        List<long[]> out = new ArrayList<>();
        for (JsonNode n : map) {
            // "zero" of a range with data comes from the host file's holes (qemu asks the filesystem),
            // not from qcow2 metadata, so it is compared only where there is no data.
            boolean data = n.get("data").asBoolean();
            long[] e = {n.get("start").asLong(), n.get("length").asLong(), n.get("depth").asLong(),
                    n.get("present").asBoolean() ? 1 : 0, !data && n.get("zero").asBoolean() ? 1 : 0,
                    n.get("data").asBoolean() ? 1 : 0, n.has("offset") ? n.get("offset").asLong() : -1};
            if (!out.isEmpty()) {
                long[] p = out.getLast();
                boolean same = p[2] == e[2] && p[3] == e[3] && p[4] == e[4] && p[5] == e[5] && p[0] + p[1] == e[0]
                        && ((p[6] < 0 && e[6] < 0) || (p[6] >= 0 && p[6] + p[1] == e[6]));
                if (same) { p[1] += e[1]; continue; }
            }
            out.add(e);
        }
        return out.stream().map(java.util.Arrays::toString).toList();
    }

    static String qblk(String... args) {
        QblkRunner.Result r = QblkRunner.run(args);
        assertEquals(0, r.exitCode(), "qblk " + String.join(" ", args) + ": " + r.err());
        return r.out();
    }

    /** Guest bytes [off, off+len) as qemu sees them (qemu-img convert to raw, then a slice). */
    private static byte[] qemuRead(Path img, long off, int len) throws IOException {
        Path raw = img.resolveSibling("whole.raw");
        java.nio.file.Files.deleteIfExists(raw);
        QemuTools.run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", img.toString(), raw.toString()).expect(0);
        byte[] all = java.nio.file.Files.readAllBytes(raw);
        java.nio.file.Files.delete(raw);
        return java.util.Arrays.copyOfRange(all, (int) off, (int) off + len);
    }

    private static MemorySegment seg(Arena a, long len, int b) {
        return a.allocate(len, 4096).fill((byte) b);
    }

    private static void fill(byte[] a, int from, int len, int v) {
        java.util.Arrays.fill(a, from, from + len, (byte) v);
    }
}
