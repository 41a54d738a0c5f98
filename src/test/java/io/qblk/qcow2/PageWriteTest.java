package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.*;
import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * docs/ordering.md R18: a flush or write-through commit writes only the pages of an L2 table or a
 * refcount block that changed. Random 4 KiB allocating write-through writes on an empty image: the
 * metadata bytes per commit are a few 4 KiB pages, not clusters; the file as a killed process leaves
 * it reads like the live image; after close qemu-img check is clean and qemu-img compare finds the
 * image equal to a qemu-io twin given the same writes. Small clusters (whole tables), extended L2,
 * lazy refcounts and several refcount widths.
 */
class PageWriteTest {
    @TempDir
    Path dir;

    private static final int WRITES = 160, LEN = 4096;
    private static final long VSIZE = 1L << 30;

    /** The writes: 4 KiB each, at distinct 4 KiB-aligned places in distinct clusters, each allocating. */
    private static List<Long> offsets(int cs, long seed) {
        Random r = new Random(seed);
        long unit = Math.max(cs, LEN);
        Set<Long> units = new LinkedHashSet<>();
        while (units.size() < WRITES) units.add(r.nextLong(VSIZE / unit));
        List<Long> out = new ArrayList<>();
        for (long u : units) out.add(u * unit + (cs > LEN ? (long) r.nextInt(cs / LEN) * LEN : 0));
        return out;
    }

    private static int byteOf(int i) { return 1 + i % 250; }

    @ParameterizedTest(name = "cluster {0}, refcount bits {1}, extended L2 {2}, lazy {3}")
    @CsvSource({
        "65536, 16, false, false",
        "65536, 1, false, false",
        "65536, 8, false, false",
        "65536, 64, false, false",
        "65536, 16, true, false",
        "65536, 16, false, true",
        "2097152, 16, false, false",
        "4096, 16, false, false",
        "2048, 16, false, false",
        "512, 16, false, false",
    })
    void writeThroughCommitsWriteChangedPagesOnly(int cs, int refBits, boolean extended, boolean lazy) throws Exception {
        Path p = dir.resolve("qblk.qcow2"), twin = dir.resolve("twin.qcow2"), killed = dir.resolve("killed.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(VSIZE).withClusterSize(cs).withRefcountBits(refBits).withExtendedL2(extended).withLazyRefcounts(lazy));
        Result made = qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=" + cs + ",refcount_bits=" + refBits + ",extended_l2=" + (extended ? "on" : "off"),
                twin.toString(), String.valueOf(VSIZE));
        assertEquals(0, made.exit(), made.out());
        List<Long> offs = offsets(cs, cs * 31L + refBits);
        long bytes, commits, tail;
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withMetadataWrite(MetadataWrite.WRITETHROUGH))) {
            // the first write makes the first L2 table and the tail reserve: out of the count
            img.write(offs.get(0), filled(LEN, byteOf(0)));
            long b0 = img.stats().metadataBytesWritten(), c0 = img.stats().flushes(), t0 = img.stats().tailCommits();
            for (int i = 1; i < WRITES; i++) img.write(offs.get(i), filled(LEN, byteOf(i)));
            bytes = img.stats().metadataBytesWritten() - b0;
            commits = img.stats().flushes() - c0;
            tail = img.stats().tailCommits() - t0;
            Files.copy(p, killed); // what a kill -9 leaves: never flushed
        }
        System.out.printf("R18 cluster %d refcount bits %d extended %s lazy %s: %d commits (%d tail-only), %d metadata bytes, %.0f per commit%n",
                cs, refBits, extended, lazy, commits, tail, bytes, (double) bytes / commits);
        assertEquals(WRITES - 1, commits, "one commit per depth-1 allocating write");
        if (cs >= 65536) {
            // a commit writes one page of the L2 table (and of a refcount block unless it is a tail
            // mapping or lazy), plus now and then a new L2 table or the L1 table: a whole cluster each
            // was 64 KiB (2 MiB) per table before R18
            assertTrue(bytes <= commits * 3L * CachedTable.PAGE + 16L * cs, bytes + " metadata bytes for " + commits + " commits");
            if (!extended && !lazy) assertTrue(tail > commits / 2, "most commits are R17 tail-only: " + tail);
            if (tail > 0) assertTrue(bytes < commits * 2L * CachedTable.PAGE + 16L * cs, "a tail-only commit writes one page");
        } else {
            // a table no larger than a page is written whole: the writes are multiples of the cluster (the L1 table aside)
            assertTrue(bytes >= commits * (long) Math.min(cs, CachedTable.PAGE), bytes + " bytes");
        }

        // the killed copy reads like the live image: every completed write is mapped in it
        try (Qcow2Image ro = Qcow2Image.open(killed, OpenOptions.defaults().withReadOnly(true))) {
            for (int i = 0; i < WRITES; i++)
                assertArrayEquals(filled(LEN, byteOf(i)).toArray(ValueLayout.JAVA_BYTE), read(ro, offs.get(i), LEN), "killed copy, write " + i);
            if (!lazy) assertEquals(0, ro.check(RepairMode.NONE).corruptions(), "the killed copy has leaks at most");
        }
        if (!lazy) assertQemuLeaksOnly(killed);

        List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "qcow2"));
        for (int i = 0; i < WRITES; i++) cmd.addAll(List.of("-c", "write -q -P " + byteOf(i) + " " + offs.get(i) + " " + LEN));
        cmd.add(twin.toString());
        Result w = run(cmd.toArray(String[]::new));
        assertEquals(0, w.exit(), w.out());
        assertQemuClean(p);
        Result cmp = qemuImg("compare", "-f", "qcow2", "-F", "qcow2", p.toString(), twin.toString());
        assertEquals(0, cmp.exit(), cmp.out());
        if (!lazy) {
            Result ck = qemuImg("compare", "-f", "qcow2", "-F", "qcow2", killed.toString(), twin.toString());
            assertEquals(0, ck.exit(), ck.out());
        }
    }
}
