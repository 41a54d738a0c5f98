package io.qblk.faults;

import io.qblk.testing.IoEvent;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import org.junit.jupiter.api.Test;

/** The crash workloads really reach the metadata paths they are meant to cover. */
class WorkloadCoverageTest {

    @Test
    void workloadsGrowTheRefcountTableAndAllocateMetadata() throws Exception {
        for (long seed : new long[] {1, 2, 3}) {
            int grown = 0, rewrites = 0;
            for (String kind : Workload.KINDS) {
                if (!Workload.applies(kind, 512)) continue;
                CrashStateExplorer.Recorded r = CrashStateExplorer.record(Workload.generate(kind, 512, seed));
                long rtOffset = ByteBuffer.wrap(r.base()).getLong(48);
                boolean moved = false;
                for (IoEvent e : r.log())
                    if (e.kind() == IoEvent.Kind.WRITE && e.offset() == 48 && ByteBuffer.wrap(e.data()).getLong(0) != rtOffset) moved = true;
                if (moved) grown++;
                // in-place rewrites: the same host offset written twice
                java.util.Set<Long> seen = new java.util.HashSet<>();
                for (IoEvent e : r.log()) if (e.kind() == IoEvent.Kind.WRITE && e.offset() > 65536 && !seen.add(e.offset())) { rewrites++; break; }
            }
            System.out.println("seed " + seed + ": " + grown + " of " + Workload.KINDS.size() + " 512-byte-cluster workloads grew the refcount table, " + rewrites + " rewrote in place");
            assertTrue(grown >= 1, "seed " + seed + ": no 512-byte-cluster workload grew the refcount table");
            assertTrue(rewrites >= 2, "seed " + seed + ": only " + rewrites + " workloads rewrote a cluster in place");
        }
    }
}
