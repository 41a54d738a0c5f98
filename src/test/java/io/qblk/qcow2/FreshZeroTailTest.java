package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.*;
import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * docs/ordering.md R17, the fresh zero tail: depth-1 allocating write-through writes on an empty
 * image share the reserve's refill syncs instead of paying one each; the file as a killed process
 * leaves it reads exactly like the live image (every L2 entry is in it) and checks clean but for
 * the reserve's leaks; a clean close gives the reserve back and cuts the file after its last used
 * cluster.
 */
class FreshZeroTailTest {
    @TempDir
    Path dir;

    private static final int CS = 65536, WRITES = 256;
    private static final long VSIZE = 1L << 30;

    private static OpenOptions writeThrough() {
        return OpenOptions.defaults().withMetadataWrite(MetadataWrite.WRITETHROUGH);
    }

    /** Write i: 4 KiB into its own guest cluster (a different one each time), at varying offsets inside it (odd ones partial, not at the start). */
    private static long offsetOf(int i) {
        return (long) (i * 3 + 1) * CS + (i % 2 == 0 ? 0 : 4096L * (1 + i % 13));
    }

    /** Runs the writes (the first one, which creates the L2 table, out of the count); returns the datasyncs they did. */
    private static long writeAll(Qcow2Image img) throws Exception {
        img.write(0, pattern(4096, 1000));
        long s0 = img.stats().datasyncs();
        for (int i = 0; i < WRITES; i++) img.write(offsetOf(i), pattern(4096, i));
        return img.stats().datasyncs() - s0;
    }

    /** The guest bytes the writes leave, compared cluster by cluster (zeroes around every write). */
    private static void assertData(Qcow2Image img) throws Exception {
        assertArrayEquals(pattern(4096, 1000).toArray(ValueLayout.JAVA_BYTE), read(img, 0, 4096));
        for (int i = 0; i < WRITES; i++) {
            long off = offsetOf(i), base = off & -CS;
            byte[] want = new byte[CS];
            MemorySegment.ofArray(want).asSlice(off - base, 4096).copyFrom(pattern(4096, i));
            assertArrayEquals(want, read(img, base, CS), "guest cluster of write " + i);
        }
        assertArrayEquals(new byte[CS], read(img, (long) (WRITES * 3 + 5) * CS, CS), "an unwritten cluster reads zeroes");
    }

    private static long imageEndOffset(Path p) throws Exception {
        Result r = qemuImg("check", "--output=json", "-f", "qcow2", p.toString());
        Matcher m = Pattern.compile("\"image-end-offset\":\\s*(\\d+)").matcher(r.out());
        assertTrue(m.find(), r.out());
        return Long.parseLong(m.group(1));
    }

    @Test
    void allocatingWritesShareTheRefillSyncsAndTheKilledCopyReadsLikeTheLiveImage() throws Exception {
        Path p = dir.resolve("empty.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(VSIZE).withClusterSize(CS));
        Path killed = dir.resolve("killed.qcow2");
        long syncs, tailCommits;
        try (Qcow2Image img = Qcow2Image.open(p, writeThrough())) {
            syncs = writeAll(img);
            tailCommits = img.stats().tailCommits();
            // what a kill -9 leaves: the file as it is now, never flushed
            Files.copy(p, killed);
        }
        System.out.println("R17: " + WRITES + " depth-1 allocating write-through writes: " + syncs + " datasyncs, " + tailCommits + " commits without a sync");
        // 32 clusters (2 MiB) reserved at a time, a new 32 when 16 remain: about one sync per 32 writes
        assertTrue(syncs <= WRITES / 8, "datasyncs " + syncs + " for " + WRITES + " writes");
        assertTrue(tailCommits >= WRITES - WRITES / 8, "tail commits " + tailCommits);

        try (Qcow2Image copy = Qcow2Image.open(killed, OpenOptions.defaults().withReadOnly(true))) {
            assertData(copy);
        }
        assertQemuLeaksOnly(killed); // the unused reserve

        assertQemuClean(p); // the close gave the reserve back: no leak
        assertEquals(imageEndOffset(p), Files.size(p), "the file ends at its last used cluster");
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
            assertData(img);
        }
        // the killed copy is clean once qemu-img drops the leaks, and reads like the closed image
        assertEquals(0, qemuImg("check", "-r", "leaks", "-f", "qcow2", killed.toString()).exit());
        assertQemuClean(killed);
        assertEquals(0, qemuImg("compare", "-f", "qcow2", "-F", "qcow2", killed.toString(), p.toString()).exit());
    }

    /**
     * The reserve grows when allocations outrun it: requests of 64 new clusters each (as many writers
     * in flight between two commits would allocate) empty a 32-cluster reserve, so it doubles after
     * each such commit until a request finds every cluster it maps ready; then those requests commit
     * without a sync. The killed copy still reads like the live image and leaks only the reserve.
     */
    @Test
    void theReserveGrowsWhenAllocationsOutrunIt() throws Exception {
        Path p = dir.resolve("burst.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(VSIZE).withClusterSize(CS));
        Path killed = dir.resolve("burst-killed.qcow2");
        int span = 64, requests = 8;
        long missesFirst = 0, missesLast = 0, syncsLast = 0;
        try (Qcow2Image img = Qcow2Image.open(p, writeThrough())) {
            img.write(0, pattern(4096, 1000));
            for (int r = 0; r < requests; r++) {
                long m = img.stats().tailMisses(), s = img.stats().datasyncs();
                img.write((long) (1 + r * span) * CS, pattern(span * CS, r));
                if (r == 0) missesFirst = img.stats().tailMisses() - m;
                missesLast = img.stats().tailMisses() - m;
                syncsLast = img.stats().datasyncs() - s;
            }
            System.out.println("R17 burst: reserve target " + img.stats().tailTarget() + " clusters, misses of the first request "
                    + missesFirst + ", of the last " + missesLast + " (" + syncsLast + " datasyncs)");
            // doubled once for the misses, and on while every commit refills it (WriteBack.FAST_REFILL), up to 32 MiB
            assertTrue(img.stats().tailTarget() >= 2 * 32 && img.stats().tailTarget() <= 512, "reserve target " + img.stats().tailTarget());
            Files.copy(p, killed);
        }
        assertTrue(missesFirst >= span / 2, "the first request outruns the 32-cluster reserve: " + missesFirst);
        assertEquals(0, missesLast, "the grown reserve covers a whole request");
        assertTrue(syncsLast <= 1, "a request on the grown reserve commits without its own sync (at most the refill's): " + syncsLast);
        try (Qcow2Image live = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true));
             Qcow2Image copy = Qcow2Image.open(killed, OpenOptions.defaults().withReadOnly(true))) {
            for (int r = 0; r < requests; r++) {
                long off = (long) (1 + r * span) * CS;
                byte[] want = pattern(span * CS, r).toArray(ValueLayout.JAVA_BYTE);
                assertArrayEquals(want, read(live, off, span * CS), "request " + r);
                assertArrayEquals(want, read(copy, off, span * CS), "killed copy, request " + r);
            }
        }
        assertQemuClean(p);
        assertQemuLeaksOnly(killed);
    }

    /**
     * The reserve also grows when it lasts only a few commits although no allocation found it empty:
     * requests of 8 new clusters each use up half of the 32-cluster reserve in two commits, so each
     * refill (a sync that every waiting writer pays) would come after 2-4 commits; doubling while a
     * refill comes fewer than {@link WriteBack#FAST_REFILL} commits after the last one needs fewer of them.
     */
    @Test
    void theReserveGrowsWhenRefillsComeOften() throws Exception {
        Path p = dir.resolve("often.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(VSIZE).withClusterSize(CS));
        int span = 8, requests = 64;
        long misses, syncs;
        try (Qcow2Image img = Qcow2Image.open(p, writeThrough())) {
            img.write(0, pattern(4096, 2000));
            long m = img.stats().tailMisses(), s = img.stats().datasyncs();
            for (int r = 0; r < requests; r++) img.write((long) (1 + r * span) * CS, pattern(span * CS, r));
            misses = img.stats().tailMisses() - m;
            syncs = img.stats().datasyncs() - s;
            System.out.println("R17 often: reserve target " + img.stats().tailTarget() + " clusters, " + syncs + " datasyncs for " + requests + " requests of " + span + " clusters");
            assertTrue(img.stats().tailTarget() >= 4 * 32, "the reserve doubled at least twice: " + img.stats().tailTarget());
        }
        assertEquals(0, misses, "no allocation found the reserve empty");
        // a 32-cluster reserve would sync every 4 requests (16); the grown one at most about half as often
        assertTrue(syncs <= requests / 6, syncs + " datasyncs");
        try (Qcow2Image live = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
            for (int r = 0; r < requests; r++)
                assertArrayEquals(pattern(span * CS, r).toArray(ValueLayout.JAVA_BYTE), read(live, (long) (1 + r * span) * CS, span * CS), "request " + r);
        }
        assertQemuClean(p);
    }

    /** The control: over a backing file the old contents are the backing file's, so every allocating write pays its own sync (R1). */
    @Test
    void writesOverBackingDataTakeTheOrderedPath() throws Exception {
        Path base = dir.resolve("base.raw");
        assertEquals(0, qemuImg("create", "-q", "-f", "raw", base.toString(), String.valueOf(VSIZE)).exit());
        Path p = dir.resolve("overlay.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(VSIZE).withClusterSize(CS).withBacking(base.toString(), "raw"));
        long syncs;
        try (Qcow2Image img = Qcow2Image.open(p, writeThrough())) {
            syncs = writeAll(img);
            assertEquals(0, img.stats().tailCommits(), "no write over backing data maps a tail cluster");
        }
        assertTrue(syncs >= WRITES, "datasyncs " + syncs + " for " + WRITES + " writes over backing data");
        assertQemuClean(p);
    }

    /** Check needs exact refcounts: it gives the reserve back first, so an open image with a reserve checks clean. */
    @Test
    void checkWhileOpenSeesNoReserveLeaks() throws Exception {
        Path p = dir.resolve("check.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(VSIZE).withClusterSize(CS));
        try (Qcow2Image img = Qcow2Image.open(p, writeThrough())) {
            writeAll(img);
            CheckReport r = img.check(RepairMode.NONE);
            assertTrue(r.clean(), r.messages().toString());
            assertEquals(0, r.leaks(), "leaked clusters");
            // writes go on after the check: the first refills the reserve, the next ones use it
            long before = img.stats().tailCommits();
            for (int i = 0; i < 3; i++) img.write((long) (WRITES * 3 + 9 + i) * CS, pattern(4096, 77 + i));
            assertEquals(before + 2, img.stats().tailCommits());
        }
        assertQemuClean(p);
        assertEquals(imageEndOffset(p), Files.size(p), "the file ends at its last used cluster");
    }
}
