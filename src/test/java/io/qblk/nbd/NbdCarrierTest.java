package io.qblk.nbd;

import static io.qblk.nbd.NbdProtocol.*;
import static org.junit.jupiter.api.Assertions.*;

import io.qblk.target.BlockTarget;
import io.qblk.target.RawTarget;
import io.qblk.uring.CallerRing;
import io.qblk.uring.RingCarrierTest;
import io.qblk.uring.UringFileBackend;
import io.qblk.uring.VirtualCarrier;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * NBD connections on a carrier ({@link NbdServer.Options#carrier()}): every request of a connection
 * runs on that connection's ring thread (the OS thread that owns the ring bound as its caller ring),
 * each connection has a ring of its own, file I/O goes through it, and the ring ends with the connection.
 */
@Timeout(60)
class NbdCarrierTest {
    static final long SIZE = 16L << 20;
    @TempDir Path dir;

    /** Where one request ran: its OS thread, the OS thread owning its caller ring (-1: none bound), that ring's name. */
    record Seen(int tid, int ringTid, String ring) {}

    /** A raw file target that records, for each read and write, where it ran. */
    static final class Probe implements BlockTarget {
        final RawTarget raw;
        final ConcurrentLinkedQueue<Seen> seen = new ConcurrentLinkedQueue<>();

        Probe(RawTarget raw) { this.raw = raw; }

        void record() throws IOException {
            CallerRing c = CallerRing.current();
            seen.add(c == null ? new Seen(RingCarrierTest.tid(), -1, null)
                    : new Seen(RingCarrierTest.tid(), c.ring().callOnOwner(RingCarrierTest::tid), c.ring().name()));
        }

        @Override public long size() { return raw.size(); }
        @Override public boolean readOnly() { return false; }
        @Override public void read(long offset, MemorySegment dst) throws IOException { record(); raw.read(offset, dst); }
        @Override public void write(long offset, MemorySegment src, boolean fua) throws IOException { record(); raw.write(offset, src, fua); }
        @Override public void flush() throws IOException { raw.flush(); }
        @Override public void discard(long offset, long length) throws IOException { raw.discard(offset, length); }
        @Override public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException { raw.writeZeroes(offset, length, mayUnmap); }
        @Override public List<Extent> blockStatus(long offset, long length) throws IOException { return raw.blockStatus(offset, length); }
        @Override public void close() throws IOException { raw.close(); }
    }

    UringFileBackend file;

    Probe probe() throws IOException {
        Path image = dir.resolve("disk.raw");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) { f.setLength(SIZE); }
        file = UringFileBackend.openForCallerRing(image, false);
        return new Probe(new RawTarget(file));
    }

    static byte[] pattern(int len, int seed) {
        byte[] b = new byte[len];
        for (int i = 0; i < len; i++) b[i] = (byte) (seed + i * 7);
        return b;
    }

    /** 32 writes in flight at once, then 32 reads, each checked; one client per call. */
    static void writeAndReadBack(InetSocketAddress addr, int seed) throws IOException {
        try (RawNbdClient c = new RawNbdClient(addr).hello().go("d", false, false)) {
            for (int i = 0; i < 32; i++) c.request(0, CMD_WRITE, i, (seed * 32L + i) * 4096, 4096, pattern(4096, seed + i));
            for (int i = 0; i < 32; i++) assertEquals(0, c.reply().error());
            for (int i = 0; i < 32; i++) c.request(0, CMD_READ, 100 + i, (seed * 32L + i) * 4096, 4096, null);
            for (int i = 0; i < 32; i++) {
                RawNbdClient.Reply r = c.reply(4096);
                assertEquals(0, r.error());
                int k = (int) r.cookie() - 100;
                assertArrayEquals(pattern(4096, seed + k), r.payload(), "read " + k);
            }
        }
    }

    static Set<String> ringThreadsAlive() {
        Set<String> names = ConcurrentHashMap.newKeySet();
        for (Thread t : Thread.getAllStackTraces().keySet()) if (t.getName().matches("nbd-conn-\\d+-ring")) names.add(t.getName());
        return names;
    }

    @Test
    void requestsRunOnTheirConnectionsRingThread() throws Exception {
        assertTrue(VirtualCarrier.available(), "surefire passes --add-opens java.base/java.lang: " + VirtualCarrier.unavailableReason());
        assertTrue(SocketFd.available(), "surefire passes --add-opens java.base/sun.nio.ch: sockets are read through the ring");
        Probe p = probe();
        try (NbdServer server = new NbdServer(NbdServer.Options.defaults().withCarrier(true))) {
            InetSocketAddress addr = server.bindTcp("127.0.0.1", 0);
            server.addExport("d", p, false);
            Thread other = Thread.ofVirtual().start(() -> {
                try {
                    writeAndReadBack(addr, 1);
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            writeAndReadBack(addr, 2);
            other.join();
        } finally {
            p.close();
        }
        assertEquals(128, p.seen.size(), "2 clients x 64 requests");
        for (Seen s : p.seen) {
            assertNotEquals(-1, s.ringTid(), "a request without its connection's ring bound: " + s);
            assertEquals(s.ringTid(), s.tid(), "request ran off its connection's ring thread " + s.ring());
        }
        Set<String> rings = ConcurrentHashMap.newKeySet();
        Set<Integer> tids = ConcurrentHashMap.newKeySet();
        for (Seen s : p.seen) { rings.add(s.ring()); tids.add(s.tid()); }
        assertEquals(2, rings.size(), "one ring per connection: " + rings);
        assertEquals(2, tids.size(), "one OS thread per connection: " + tids);
        assertTrue(file.ringOps() >= 128, "file I/O through the connections' rings: " + file.ringOps());
        assertEquals(0, file.syscallOps(), "no syscall file I/O on a carrier");
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (!ringThreadsAlive().isEmpty() && System.nanoTime() < deadline) Thread.sleep(10);
        assertEquals(Set.of(), ringThreadsAlive(), "the rings end with their connections");
    }

    @Test
    void withoutTheCarrierRequestsStayOnTheDefaultScheduler() throws Exception {
        Probe p = probe();
        try (NbdServer server = new NbdServer(NbdServer.Options.defaults())) {
            InetSocketAddress addr = server.bindTcp("127.0.0.1", 0);
            server.addExport("d", p, false);
            writeAndReadBack(addr, 3);
        } finally {
            p.close();
        }
        assertEquals(64, p.seen.size());
        assertTrue(p.seen.stream().allMatch(s -> s.ringTid() == -1), "no ring bound: " + Arrays.toString(p.seen.toArray()));
        assertEquals(0, file.ringOps());
        assertEquals(Set.of(), ringThreadsAlive());
    }
}
