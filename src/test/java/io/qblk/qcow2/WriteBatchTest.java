package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.*;
import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.AioMode;
import io.qblk.io.CacheMode;
import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.IoBackend;
import io.qblk.uring.FileBackends;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A flush writes each phase's metadata as one batch ({@link IoBackend#writeAll}, one io_uring
 * submission): the batches keep the phases apart, and a batch with one failed write leaves its whole
 * phase unwritten, so the next flush writes every page of it again (docs/ordering.md, "Failures").
 */
@Timeout(120)
class WriteBatchTest {
    @TempDir
    Path dir;

    /** A real io_uring file pair; records every batch and, when armed, fails the last write of the next batch of at least 3 with EIO after the others landed. */
    static final class FailOneOfABatch implements IoBackend {
        final IoBackend inner;
        final List<List<Long>> batches = new ArrayList<>();
        volatile boolean armed;
        volatile long failedAt = -1;

        FailOneOfABatch(IoBackend inner) {
            this.inner = inner;
        }

        @Override
        public synchronized void writeAll(List<Write> writes) throws IOException {
            batches.add(writes.stream().map(Write::offset).toList());
            if (armed && writes.size() >= 3) {
                armed = false;
                Write last = writes.getLast();
                inner.writeAll(writes.subList(0, writes.size() - 1));
                failedAt = last.offset();
                throw new ErrnoException("write (injected) at " + last.offset(), Errno.EIO);
            }
            inner.writeAll(writes);
        }

        @Override public void read(long offset, MemorySegment dst) throws IOException { inner.read(offset, dst); }
        @Override public void write(long offset, MemorySegment src) throws IOException { inner.write(offset, src); }
        @Override public void datasync() throws IOException { inner.datasync(); }
        @Override public long size() throws IOException { return inner.size(); }
        @Override public void truncate(long length) throws IOException { inner.truncate(length); }
        @Override public void allocate(long offset, long length) throws IOException { inner.allocate(offset, length); }
        @Override public void punchHole(long offset, long length) throws IOException { inner.punchHole(offset, length); }
        @Override public void zeroRange(long offset, long length) throws IOException { inner.zeroRange(offset, length); }
        @Override public boolean readOnly() { return inner.readOnly(); }
        @Override public void close() throws IOException { inner.close(); }
    }

    private static final int CS = 65536;

    /** Guest cluster k * 1024 + j of the first L2 table: its entry lies in page 2k of the table (512 entries a page), so no two k are neighbours. */
    private static long offsetOf(int k, int j) {
        return ((long) k * 1024 + j) * CS + 4096;
    }

    @Test
    void aFailedWriteOfAPhaseLeavesThePhaseUnwrittenAndTheNextFlushWritesItAgain() throws Exception {
        Path p = dir.resolve("batch.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(1L << 30).withClusterSize(CS));
        try (FailOneOfABatch file = new FailOneOfABatch(FileBackends.open(p, false, CacheMode.NONE, AioMode.IO_URING))) {
            try (Qcow2Image img = Qcow2Image.open(file, OpenOptions.defaults())) {
                for (int k = 0; k < 8; k++) img.write(offsetOf(k, 1), filled(4096, 10 + k)); // makes the L2 table (fresh: whole)
                img.flush();
                for (int k = 0; k < 8; k++) img.write(offsetOf(k, 2), filled(4096, 20 + k));
                file.batches.clear();
                file.armed = true;
                var e = assertThrows(ErrnoException.class, img::flush, "the injected error surfaces with its kind");
                assertEquals(Errno.EIO, e.errno());
                assertTrue(file.failedAt >= 0);
                List<Long> failedBatch = file.batches.getLast();
                assertTrue(failedBatch.size() >= 3 && failedBatch.contains(file.failedAt), failedBatch.toString());

                file.batches.clear();
                img.flush();
                List<Long> again = file.batches.stream().flatMap(List::stream).toList();
                for (long off : failedBatch) assertTrue(again.contains(off), "the next flush writes " + off + " again: " + file.batches);
                for (int k = 0; k < 8; k++) {
                    assertArrayEquals(filled(4096, 10 + k).toArray(ValueLayout.JAVA_BYTE), read(img, offsetOf(k, 1), 4096));
                    assertArrayEquals(filled(4096, 20 + k).toArray(ValueLayout.JAVA_BYTE), read(img, offsetOf(k, 2), 4096));
                }
            }
        }
        assertQemuClean(p);
        try (Qcow2Image ro = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
            for (int k = 0; k < 8; k++) {
                assertArrayEquals(filled(4096, 10 + k).toArray(ValueLayout.JAVA_BYTE), read(ro, offsetOf(k, 1), 4096), "reopened, cluster " + k);
                assertArrayEquals(filled(4096, 20 + k).toArray(ValueLayout.JAVA_BYTE), read(ro, offsetOf(k, 2), 4096), "reopened, cluster " + k);
            }
        }
    }

    @Test
    void writeThroughCommitsAtDepth64BatchTheirPagesAndReadBackAfterAKill() throws Exception {
        Path p = dir.resolve("deep.qcow2"), killed = dir.resolve("killed.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(1L << 30).withClusterSize(CS));
        int threads = 64, per = 8;
        try (FailOneOfABatch file = new FailOneOfABatch(FileBackends.open(p, false, CacheMode.NONE, AioMode.IO_URING))) {
            try (Qcow2Image img = Qcow2Image.open(file, OpenOptions.defaults().withMetadataWrite(MetadataWrite.WRITETHROUGH))) {
                List<Thread> ts = new ArrayList<>();
                List<Throwable> errors = java.util.Collections.synchronizedList(new ArrayList<>());
                for (int t = 0; t < threads; t++) {
                    int tt = t;
                    ts.add(Thread.ofVirtual().start(() -> {
                        try {
                            for (int i = 0; i < per; i++) img.write(guest(tt, i), filled(4096, 1 + (tt * per + i) % 250));
                        } catch (Throwable x) {
                            errors.add(x);
                        }
                    }));
                }
                for (Thread t : ts) t.join();
                assertEquals(List.of(), errors);
                java.nio.file.Files.copy(p, killed); // what a kill -9 leaves: never flushed
                assertTrue(file.batches.stream().anyMatch(b -> b.size() > 1), "some commit wrote several pages in one batch: " + file.batches.size());
            }
        }
        assertQemuClean(p);
        assertQemuLeaksOnly(killed);
        try (Qcow2Image ro = Qcow2Image.open(killed, OpenOptions.defaults().withReadOnly(true))) {
            for (int t = 0; t < threads; t++)
                for (int i = 0; i < per; i++)
                    assertArrayEquals(filled(4096, 1 + (t * per + i) % 250).toArray(ValueLayout.JAVA_BYTE), read(ro, guest(t, i), 4096), "killed copy, " + t + "/" + i);
        }
    }

    /** Distinct clusters spread over many L2 pages: thread t, write i. */
    private static long guest(int t, int i) {
        return ((long) (i * 64 + t) * 37 % 16384) * CS + (long) ((t + i) % 16) * 4096;
    }
}
