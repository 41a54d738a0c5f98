package io.qblk.faults;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.longs;

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
