package io.qblk.faults;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.longs;

import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.testing.MemoryBackend;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Hostile images (mutated valid images) through QuickTheories: opening, reading, writing,
 * flushing and checking each ends in data or an IOException with a message, within a timeout,
 * and no guest write lands on live metadata. Examples: -Dqblk.hostileImages=N (default 1500).
 */
class HostileImageTest {
    static List<HostileImages.Seed> seeds;
    static HostileImages hostile;

    @BeforeAll
    static void seeds(@TempDir Path dir) throws Exception {
        seeds = HostileImages.seeds(dir);
        hostile = new HostileImages();
    }

    @AfterAll
    static void close() {
        hostile.close();
        System.out.println(hostile.summary());
    }

    @Test
    void mutatedImagesGiveDataOrAClearError() {
        int n = Integer.getInteger("qblk.hostileImages", 1500);
        long before = hostile.tried;
        qt().withExamples(n).withShrinkCycles(0).withFixedSeed(CrashStateExplorerTest.seed())
                .forAll(integers().between(0, seeds.size() - 1), longs().all())
                .checkAssert((which, s) -> {
                    HostileImages.Seed seed = seeds.get(which);
                    byte[] img = seed.bytes().clone();
                    Random r = new Random(s);
                    String what = HostileImages.mutate(img, r);
                    HostileImages.Outcome o = hostile.exercise(img, r.nextLong());
                    hostile.tried++;
                    assertTrue(o.verdict() == HostileImages.Verdict.OK || o.verdict() == HostileImages.Verdict.REJECTED,
                            o.verdict() + " on " + seed.name() + " [" + what + "]: " + o.detail());
                });
        assertEquals(n, hostile.tried - before);
    }

    /** Images with persistent dirty bitmaps (qemu-made) whose bitmaps extension, directory or tables are mutated. */
    @Test
    void mutatedBitmapsGiveDataOrAClearError(@TempDir Path dir) throws Exception {
        List<HostileImages.Seed> bm = HostileImages.bitmapSeeds(dir);
        assertTrue(!bm.isEmpty() || !QemuImgCheck.available(), "qemu-img is installed but made no image with bitmaps");
        if (bm.isEmpty()) {
            System.out.println("SKIP mutatedBitmapsGiveDataOrAClearError: qemu-img is not installed (it makes the seed images)");
            return;
        }
        // found by this test: a refcount table entry pointing at the bitmap directory (B1 wrote over a "refcount block")
        if (bm.size() > 1) {
            byte[] img = bm.get(1).bytes().clone();
            Random r = new Random(4222276311264820253L);
            String what = HostileImages.mutateBitmaps(img, r);
            HostileImages.Outcome o = hostile.exercise(img, r.nextLong());
            assertTrue(o.verdict() == HostileImages.Verdict.OK || o.verdict() == HostileImages.Verdict.REJECTED, o.verdict() + " [" + what + "]: " + o.detail());
        }
        int n = Integer.getInteger("qblk.hostileImages", 1500) / 3;
        long before = hostile.tried;
        int[] outcomes = new int[HostileImages.Verdict.values().length];
        qt().withExamples(n).withShrinkCycles(0).withFixedSeed(CrashStateExplorerTest.seed())
                .forAll(integers().between(0, bm.size() - 1), longs().all())
                .checkAssert((which, s) -> {
                    HostileImages.Seed seed = bm.get(which);
                    byte[] img = seed.bytes().clone();
                    Random r = new Random(s);
                    String what = HostileImages.mutateBitmaps(img, r);
                    HostileImages.Outcome o = hostile.exercise(img, r.nextLong());
                    hostile.tried++;
                    outcomes[o.verdict().ordinal()]++;
                    assertTrue(o.verdict() == HostileImages.Verdict.OK || o.verdict() == HostileImages.Verdict.REJECTED,
                            o.verdict() + " on " + seed.name() + " [" + what + "]: " + o.detail());
                });
        assertEquals(n, hostile.tried - before);
        System.out.println("hostile bitmaps: " + java.util.Arrays.toString(HostileImages.Verdict.values()) + " " + java.util.Arrays.toString(outcomes));
        assertTrue(outcomes[HostileImages.Verdict.REJECTED.ordinal()] > 0, "no mutation was rejected: the mutations do not reach the bitmaps");
    }

    /** zstd clusters whose compressed bytes are garbage: a clear CORRUPT error naming the cluster, no crash. */
    @Test
    void corruptZstdDataIsAClearError() throws Exception {
        byte[] img = HostileImages.zstdImage();
        int frames = 0;
        for (int i = 0; i + 4 <= img.length; i++) {
            // zstd frame magic 28 b5 2f fd: damage the frame header and block bytes behind it
            if ((img[i] & 0xff) == 0x28 && (img[i + 1] & 0xff) == 0xb5 && (img[i + 2] & 0xff) == 0x2f && (img[i + 3] & 0xff) == 0xfd) {
                frames++;
                if (frames % 2 == 0) for (int j = 4; j < 24 && i + j < img.length; j++) img[i + j] ^= (byte) (0x5a + j);
                else img[i] = 0; // no frame at all
            }
        }
        assertTrue(frames >= 200, "the image holds zstd frames: " + frames);
        MemoryBackend m = new MemoryBackend(img);
        int errors = 0;
        try (Qcow2Image q = Qcow2Image.open(m, OpenOptions.defaults().withReadOnly(true)); Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096);
            for (long off = 0; off < (1L << 20); off += 4096) {
                long at = off;
                Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> q.read(at, buf), "cluster at " + at);
                assertEquals(Qcow2Exception.Kind.CORRUPT, e.kind());
                assertTrue(e.getMessage().contains("compressed cluster at") && e.getMessage().contains("zstd"), e.getMessage());
                errors++;
            }
        }
        assertEquals(256, errors);
    }

    /** Targeted cases that found engine bugs (kept as regression seeds). */
    @Test
    void knownHostileShapes() {
        // negative refcount table entry; L2 entries pointing into a refcount block / the L1 table
        long[] exampleSeeds = {-7403923644694799186L, 8972958532993110487L, 3280961560970673085L, 4645788014684787196L,
                -2262551393138823532L, 6861091380696820658L};
        for (long s : exampleSeeds) {
            HostileImages.Outcome o = hostile.tryOne(seeds, s, System.out);
            assertTrue(o.verdict() == HostileImages.Verdict.OK || o.verdict() == HostileImages.Verdict.REJECTED, s + ": " + o);
        }
    }
}
