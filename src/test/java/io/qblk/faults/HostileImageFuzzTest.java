package io.qblk.faults;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;

/**
 * Jazzer fuzz test over hostile images: the fuzzer picks a valid seed image and overwrites bytes
 * of its live metadata (header, L1, L2, refcount table and blocks). Without JAZZER_FUZZ=1 it runs
 * only the saved inputs in src/test/resources/io/qblk/faults/HostileImageFuzzTestInputs/
 * (regression mode, part of ./mvnw verify); with JAZZER_FUZZ=1 it fuzzes coverage-guided.
 */
class HostileImageFuzzTest {
    private static List<HostileImages.Seed> seeds;
    private static final HostileImages HOSTILE = new HostileImages();

    private static synchronized List<HostileImages.Seed> seeds() throws Exception {
        if (seeds == null) seeds = HostileImages.seeds(null);
        return seeds;
    }

    @AfterAll
    static void close() {
        HOSTILE.close();
    }

    @FuzzTest(maxDuration = "60s")
    void mutatedMetadataGivesDataOrAClearError(FuzzedDataProvider data) throws Exception {
        List<HostileImages.Seed> all = seeds();
        HostileImages.Seed seed = all.get(data.consumeInt(0, all.size() - 1));
        byte[] img = seed.bytes().clone();
        int cs = 1 << java.nio.ByteBuffer.wrap(img).getInt(20);
        List<Long> meta = new ArrayList<>(HostileImages.liveMetadata(img).keySet());
        int edits = data.consumeInt(1, 8);
        StringBuilder what = new StringBuilder();
        for (int i = 0; i < edits && data.remainingBytes() > 9; i++) {
            long cluster = meta.get(data.consumeInt(0, meta.size() - 1));
            int in = data.consumeInt(0, cs / 8 - 1) * 8;
            long pos = cluster + in;
            if (pos + 8 > img.length) continue;
            long v = data.consumeLong();
            for (int b = 0; b < 8; b++) img[(int) pos + b] = (byte) (v >>> (56 - 8 * b));
            what.append(" [").append(pos).append("]=").append(Long.toHexString(v));
        }
        HostileImages.Outcome o = HOSTILE.exercise(img, data.consumeLong());
        if (o.verdict() != HostileImages.Verdict.OK && o.verdict() != HostileImages.Verdict.REJECTED)
            throw new AssertionError(o.verdict() + " on " + seed.name() + what + ": " + o.detail());
    }
}
