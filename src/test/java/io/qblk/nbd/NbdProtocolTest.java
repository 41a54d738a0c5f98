package io.qblk.nbd;

import static io.qblk.nbd.NbdProtocol.*;
import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Wire-level tests with a hand-written client: handshake, commands, and every kind of bad input. */
class NbdProtocolTest implements NbdVariant {
    static final long SIZE = 64L << 20;
    NbdServer server;
    InetSocketAddress addr;
    MemoryTarget mem, ro;

    @BeforeEach
    void start() throws IOException {
        server = new NbdServer(variant(NbdServer.Options.defaults().withMaxInFlight(4)));
        addr = server.bindTcp("127.0.0.1", 0);
        mem = new MemoryTarget(SIZE, false);
        ro = new MemoryTarget(SIZE, false);
        server.addExport("mem", mem, false, "scratch");
        server.addExport("ro", ro, true);
    }

    @AfterEach
    void stop() {
        server.close();
    }

    RawNbdClient client() throws IOException {
        return new RawNbdClient(addr).hello();
    }

    RawNbdClient connected(String name) throws IOException {
        return client().go(name, true, true);
    }

    static byte[] pattern(int len, int seed) {
        byte[] b = new byte[len];
        for (int i = 0; i < len; i++) b[i] = (byte) (seed + i * 31);
        return b;
    }

    /** The server still serves a fresh client correctly (write + read back). */
    void assertServesAnotherClient() throws IOException {
        try (RawNbdClient c = connected("mem")) {
            byte[] p = pattern(4096, 77);
            c.request(0, CMD_WRITE, 1, 1 << 20, 4096, p);
            assertEquals(0, c.reply().error());
            c.request(0, CMD_READ, 2, 1 << 20, 4096, null);
            RawNbdClient.Reply r = c.reply();
            assertEquals(REPLY_TYPE_OFFSET_DATA, r.type());
            assertArrayEquals(p, Arrays.copyOfRange(r.payload(), 8, r.payload().length));
        }
    }

    static int structuredError(RawNbdClient.Reply r) {
        assertTrue(r.structured(), "error must come as a structured chunk");
        assertEquals(REPLY_TYPE_ERROR, r.type());
        assertTrue(r.done());
        return r.error();
    }

    // ------------------------------------------------------------------ handshake

    @Test
    void handshakeAdvertisesFixedNewstyleAndExportFlags() throws IOException {
        try (RawNbdClient c = client()) {
            assertEquals(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, c.handshakeFlags);
            c.go("mem", true, true);
            assertEquals(SIZE, c.exportSize);
            int f = c.transmissionFlags;
            for (int bit : new int[] {FLAG_HAS_FLAGS, FLAG_SEND_FLUSH, FLAG_SEND_FUA, FLAG_SEND_TRIM, FLAG_SEND_WRITE_ZEROES,
                    FLAG_CAN_MULTI_CONN, FLAG_SEND_DF}) assertTrue((f & bit) != 0, "flag " + bit);
            assertEquals(0, f & FLAG_READ_ONLY);
        }
        try (RawNbdClient c = client().go("ro", false, false)) {
            assertTrue((c.transmissionFlags & FLAG_READ_ONLY) != 0);
            assertEquals(0, c.transmissionFlags & FLAG_SEND_DF, "no DF without structured replies");
        }
    }

    @Test
    void infoReportsBlockSizesNameAndDescription() throws IOException {
        try (RawNbdClient c = client()) {
            c.option(OPT_INFO, RawNbdClient.goData("mem", INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE));
            Set<Integer> seen = new HashSet<>();
            RawNbdClient.OptionReply r;
            while ((r = c.optionReply()).type() == REP_INFO) {
                ByteBuffer d = ByteBuffer.wrap(r.data());
                int t = d.getShort();
                seen.add(t);
                if (t == INFO_BLOCK_SIZE) {
                    assertEquals(512, d.getInt());
                    assertEquals(4096, d.getInt());
                    assertEquals(MAX_PAYLOAD, d.getInt());
                }
                if (t == INFO_NAME) assertEquals("mem", new String(r.data(), 2, r.data().length - 2));
                if (t == INFO_DESCRIPTION) assertEquals("scratch", new String(r.data(), 2, r.data().length - 2));
            }
            assertEquals(REP_ACK, r.type());
            assertEquals(Set.of(INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE), seen);
            // INFO keeps the client in option haggling: GO still works.
            c.go("mem", false, false);
            assertEquals(SIZE, c.exportSize);
        }
    }

    @Test
    void listNamesEveryExport() throws IOException {
        try (RawNbdClient c = client()) {
            c.option(OPT_LIST, new byte[0]);
            Set<String> names = new HashSet<>();
            RawNbdClient.OptionReply r;
            while ((r = c.optionReply()).type() == REP_SERVER) {
                ByteBuffer d = ByteBuffer.wrap(r.data());
                int n = d.getInt();
                names.add(new String(r.data(), 4, n));
            }
            assertEquals(REP_ACK, r.type());
            assertEquals(Set.of("mem", "ro"), names);
        }
    }

    @Test
    void listAndSetMetaContext() throws IOException {
        try (RawNbdClient c = client()) {
            c.option(OPT_LIST_META_CONTEXT, RawNbdClient.metaData("mem"));
            assertEquals(REP_ERR_INVALID, c.optionReply().type(), "meta contexts need structured replies first");
            c.option(OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(REP_ACK, c.optionReply().type());
            c.option(OPT_LIST_META_CONTEXT, RawNbdClient.metaData("mem"));
            RawNbdClient.OptionReply r;
            List<String> listed = new ArrayList<>();
            while ((r = c.optionReply()).type() == REP_META_CONTEXT) listed.add(new String(r.data(), 4, r.data().length - 4));
            assertEquals(REP_ACK, r.type());
            assertEquals(List.of(META_BASE_ALLOCATION, "qemu:allocation-depth"), listed, "no query lists every context");
            c.option(OPT_LIST_META_CONTEXT, RawNbdClient.metaData("mem", "qemu:"));
            r = c.optionReply();
            assertEquals(REP_META_CONTEXT, r.type());
            assertEquals("qemu:allocation-depth", new String(r.data(), 4, r.data().length - 4), "a namespace query lists its contexts");
            assertEquals(REP_ACK, c.optionReply().type());
            c.option(OPT_SET_META_CONTEXT, RawNbdClient.metaData("mem", "qemu:allocation-depth", META_BASE_ALLOCATION));
            r = c.optionReply();
            assertEquals(REP_META_CONTEXT, r.type());
            assertEquals(1, ByteBuffer.wrap(r.data()).getInt(), "context ids in the order the server lists them");
            assertEquals(META_BASE_ALLOCATION, new String(r.data(), 4, r.data().length - 4));
            r = c.optionReply();
            assertEquals(2, ByteBuffer.wrap(r.data()).getInt());
            assertEquals("qemu:allocation-depth", new String(r.data(), 4, r.data().length - 4));
            assertEquals(REP_ACK, c.optionReply().type());
            c.option(OPT_SET_META_CONTEXT, RawNbdClient.metaData("mem", "x-other:thing"));
            assertEquals(REP_ACK, c.optionReply().type(), "unknown contexts select nothing");
            c.option(OPT_SET_META_CONTEXT, RawNbdClient.metaData("nope", META_BASE_ALLOCATION));
            assertEquals(REP_ERR_UNKNOWN, c.optionReply().type());
            byte[] bad = RawNbdClient.metaData("mem", META_BASE_ALLOCATION);
            c.option(OPT_SET_META_CONTEXT, Arrays.copyOf(bad, bad.length - 3));
            assertEquals(REP_ERR_INVALID, c.optionReply().type(), "truncated query");
        }
    }

    @Test
    void badOptionsGetErrorRepliesAndTheSessionGoesOn() throws IOException {
        try (RawNbdClient c = client()) {
            c.option(99, new byte[] {1, 2, 3});
            RawNbdClient.OptionReply r = c.optionReply();
            assertEquals(99, r.option());
            assertEquals(REP_ERR_UNSUP, r.type());
            c.option(OPT_STARTTLS, new byte[0]);
            assertEquals(REP_ERR_UNSUP, c.optionReply().type());
            c.option(OPT_LIST, new byte[] {0});
            assertEquals(REP_ERR_INVALID, c.optionReply().type());
            c.option(OPT_STRUCTURED_REPLY, new byte[] {0});
            assertEquals(REP_ERR_INVALID, c.optionReply().type());
            c.option(OPT_GO, RawNbdClient.goData("missing"));
            RawNbdClient.OptionReply unknown = c.optionReply();
            assertEquals(REP_ERR_UNKNOWN, unknown.type());
            assertTrue(unknown.text().contains("missing"));
            byte[] go = RawNbdClient.goData("mem", INFO_NAME);
            c.option(OPT_GO, Arrays.copyOf(go, go.length - 1));
            assertEquals(REP_ERR_INVALID, c.optionReply().type(), "request count does not match length");
            c.option(OPT_GO, new byte[] {0, 0, 0, 50, 'm', 0, 0});
            assertEquals(REP_ERR_INVALID, c.optionReply().type(), "name length past the data");
            c.option(OPT_INFO, new byte[70_000]);
            assertEquals(REP_ERR_TOO_BIG, c.optionReply().type());
            c.go("mem", true, true);
            assertEquals(SIZE, c.exportSize);
        }
    }

    @Test
    void abortIsAcknowledgedThenClosed() throws IOException {
        try (RawNbdClient c = client()) {
            c.option(OPT_ABORT, new byte[0]);
            assertEquals(REP_ACK, c.optionReply().type());
            assertTrue(c.closedByServer());
        }
        assertServesAnotherClient();
    }

    @Test
    void exportNameOptionEntersTransmissionOrDisconnects() throws IOException {
        try (RawNbdClient c = new RawNbdClient(addr).hello(FLAG_C_FIXED_NEWSTYLE)) {
            c.option(OPT_EXPORT_NAME, "mem".getBytes());
            assertEquals(SIZE, c.in.readLong());
            int flags = c.in.readUnsignedShort();
            assertTrue((flags & FLAG_HAS_FLAGS) != 0);
            c.in.readFully(new byte[124]); // no NO_ZEROES: the reserved zeroes follow
            c.request(0, CMD_READ, 5, 0, 512, null);
            RawNbdClient.Reply r = c.reply(512);
            assertEquals(0, r.error());
            assertEquals(5, r.cookie());
            assertEquals(512, r.payload().length);
        }
        try (RawNbdClient c = client()) {
            c.option(OPT_EXPORT_NAME, "nope".getBytes());
            assertTrue(c.closedByServer(), "unknown export with EXPORT_NAME must end the session");
        }
        assertServesAnotherClient();
    }

    @Test
    void unknownClientFlagsOrBadOptionMagicDisconnect() throws IOException {
        try (RawNbdClient c = new RawNbdClient(addr).hello(0x80)) {
            assertTrue(c.closedByServer());
        }
        try (RawNbdClient c = client()) {
            c.out.writeLong(0x1234);
            c.out.writeInt(OPT_LIST);
            c.out.writeInt(0);
            c.out.flush();
            assertTrue(c.closedByServer());
        }
        assertServesAnotherClient();
    }

    // ------------------------------------------------------------------ transmission

    @Test
    void readWriteFlushTrimZeroesAndBlockStatus() throws IOException {
        try (RawNbdClient c = connected("mem")) {
            byte[] p = pattern(128 << 10, 3);
            c.request(CMD_FLAG_FUA, CMD_WRITE, 10, 0, p.length, p);
            RawNbdClient.Reply w = c.reply();
            assertEquals(10, w.cookie());
            assertEquals(0, w.error());
            assertTrue(w.done());
            assertTrue(mem.flushes.get() >= 1, "FUA reached the target");

            c.request(0, CMD_READ, 11, 0, p.length, null);
            RawNbdClient.Reply r = c.reply();
            assertEquals(REPLY_TYPE_OFFSET_DATA, r.type());
            assertEquals(0L, ByteBuffer.wrap(r.payload()).getLong());
            assertArrayEquals(p, Arrays.copyOfRange(r.payload(), 8, r.payload().length));

            int flushes = mem.flushes.get();
            c.request(0, CMD_FLUSH, 12, 0, 0, null);
            assertEquals(0, c.reply().error());
            assertEquals(flushes + 1, mem.flushes.get());

            // block status: [0,128K) data, then holes up to 1 MiB
            c.request(0, CMD_BLOCK_STATUS, 13, 0, 1 << 20, null);
            RawNbdClient.Reply bs = c.reply();
            assertEquals(REPLY_TYPE_BLOCK_STATUS, bs.type());
            ByteBuffer d = ByteBuffer.wrap(bs.payload());
            assertEquals(1, d.getInt(), "context id of base:allocation");
            assertEquals(128 << 10, d.getInt());
            assertEquals(0, d.getInt());
            assertEquals((1 << 20) - (128 << 10), d.getInt(), "adjacent holes merged into one descriptor");
            assertEquals(STATE_HOLE | STATE_ZERO, d.getInt());
            assertFalse(d.hasRemaining());

            c.request(CMD_FLAG_REQ_ONE, CMD_BLOCK_STATUS, 14, 0, 1 << 20, null);
            assertEquals(4 + 8, c.reply().payload().length, "REQ_ONE: one descriptor");

            // trim the second unit, zero the first without unmapping
            c.request(0, CMD_TRIM, 15, 64 << 10, 64 << 10, null);
            assertEquals(0, c.reply().error());
            assertFalse(mem.allocated(1));
            c.request(CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 16, 0, 64 << 10, null);
            assertEquals(0, c.reply().error());
            assertTrue(mem.allocated(0), "NO_HOLE keeps the unit allocated");
            c.request(0, CMD_WRITE_ZEROES, 17, 0, 64 << 10, null);
            assertEquals(0, c.reply().error());
            assertFalse(mem.allocated(0), "without NO_HOLE the unit may be unmapped");
            c.request(0, CMD_READ, 18, 0, 128 << 10, null);
            byte[] z = c.reply().payload();
            assertArrayEquals(new byte[128 << 10], Arrays.copyOfRange(z, 8, z.length));

            c.request(0, CMD_DISC, 19, 0, 0, null);
            assertTrue(c.closedByServer());
        }
    }

    @Test
    void unknownCommandsAndFlagsAreEinval() throws IOException {
        try (RawNbdClient c = connected("mem")) {
            c.request(0, 42, 1, 0, 512, null);
            assertEquals(EINVAL, structuredError(c.reply()));
            c.request(0, CMD_CACHE, 2, 0, 512, null);
            assertEquals(EINVAL, structuredError(c.reply()));
            c.request(CMD_FLAG_REQ_ONE, CMD_READ, 3, 0, 512, null);
            assertEquals(EINVAL, structuredError(c.reply()), "REQ_ONE is not a READ flag");
            c.request(CMD_FLAG_FAST_ZERO, CMD_WRITE_ZEROES, 4, 0, 512, null);
            assertEquals(EINVAL, structuredError(c.reply()), "FAST_ZERO was not advertised");
            c.request(0x8000, CMD_FLUSH, 5, 0, 0, null);
            assertEquals(EINVAL, structuredError(c.reply()));
            c.request(0, CMD_READ, 6, 0, 512, null);
            assertEquals(0, c.reply().error(), "the connection goes on after errors");
        }
        assertServesAnotherClient();
    }

    @Test
    void lengthsOverTheMaximumAreRefused() throws IOException {
        try (RawNbdClient c = connected("mem")) {
            c.request(0, CMD_READ, 1, 0, MAX_PAYLOAD + 512L, null);
            assertEquals(EINVAL, structuredError(c.reply()));
            byte[] big = new byte[MAX_PAYLOAD + 512];
            Arrays.fill(big, (byte) 0x5a);
            c.request(0, CMD_WRITE, 2, 0, big.length, big);
            RawNbdClient.Reply r = c.reply();
            assertEquals(2, r.cookie());
            assertEquals(EINVAL, structuredError(r));
            assertFalse(mem.allocated(0), "the oversized write was discarded");
            c.request(0, CMD_READ, 3, 0, 4096, null);
            RawNbdClient.Reply ok = c.reply();
            assertEquals(3, ok.cookie(), "the payload was skipped exactly: the stream is still in sync");
            assertArrayEquals(new byte[4096], Arrays.copyOfRange(ok.payload(), 8, ok.payload().length));
            // TRIM and WRITE_ZEROES carry no payload: larger lengths are fine
            c.request(0, CMD_WRITE_ZEROES, 4, 0, SIZE, null);
            assertEquals(0, c.reply().error());
        }
    }

    @Test
    void offsetsPastTheEndAreEinvalOrEnospc() throws IOException {
        try (RawNbdClient c = connected("mem")) {
            c.request(0, CMD_READ, 1, SIZE - 512, 1024, null);
            assertEquals(EINVAL, structuredError(c.reply()));
            c.request(0, CMD_READ, 2, SIZE + 512, 512, null);
            assertEquals(EINVAL, structuredError(c.reply()));
            c.request(0, CMD_READ, 3, -512L, 512, null); // offset 2^64-512
            assertEquals(EINVAL, structuredError(c.reply()));
            c.request(0, CMD_WRITE, 4, SIZE - 512, 1024, new byte[1024]);
            assertEquals(ENOSPC, structuredError(c.reply()));
            c.request(0, CMD_WRITE_ZEROES, 5, SIZE, 512, null);
            assertEquals(ENOSPC, structuredError(c.reply()));
            c.request(0, CMD_TRIM, 6, SIZE, 512, null);
            assertEquals(EINVAL, structuredError(c.reply()));
            c.request(0, CMD_BLOCK_STATUS, 7, SIZE - 512, 4096, null);
            assertEquals(EINVAL, structuredError(c.reply()));
            c.request(0, CMD_READ, 8, 100, 512, null);
            assertEquals(EINVAL, structuredError(c.reply()), "unaligned to the 512-byte minimum block");
            c.request(0, CMD_READ, 9, SIZE - 512, 512, null);
            assertEquals(0, c.reply().error(), "the last sector is readable");
        }
        assertEquals(0, mem.blockStatus(SIZE - 4096, 4096).stream().filter(x -> !x.hole()).count(), "nothing was written");
    }

    @Test
    void readOnlyExportRefusesWritesWithEperm() throws IOException {
        try (RawNbdClient c = connected("ro")) {
            c.request(0, CMD_WRITE, 1, 0, 4096, pattern(4096, 1));
            assertEquals(EPERM, structuredError(c.reply()));
            c.request(0, CMD_TRIM, 2, 0, 4096, null);
            assertEquals(EPERM, structuredError(c.reply()));
            c.request(0, CMD_WRITE_ZEROES, 3, 0, 4096, null);
            assertEquals(EPERM, structuredError(c.reply()));
            c.request(0, CMD_FLUSH, 4, 0, 0, null);
            assertEquals(0, c.reply().error());
            c.request(0, CMD_READ, 5, 0, 4096, null);
            assertEquals(0, c.reply().error());
        }
        assertFalse(ro.allocated(0), "read-only image untouched");
    }

    @Test
    void simpleRepliesWithoutStructuredNegotiation() throws IOException {
        try (RawNbdClient c = client().go("mem", false, false)) {
            byte[] p = pattern(8192, 9);
            c.request(0, CMD_WRITE, 1, 8192, p.length, p);
            RawNbdClient.Reply w = c.reply();
            assertFalse(w.structured());
            assertEquals(0, w.error());
            c.request(0, CMD_READ, 2, SIZE, 512, null);
            RawNbdClient.Reply e = c.reply(512);
            assertFalse(e.structured());
            assertEquals(EINVAL, e.error());
            assertEquals(0, e.payload().length, "no data after an error");
            c.request(0, CMD_READ, 3, 8192, p.length, null);
            RawNbdClient.Reply r = c.reply(p.length);
            assertEquals(3, r.cookie());
            assertArrayEquals(p, r.payload());
            c.request(0, CMD_BLOCK_STATUS, 4, 0, 4096, null);
            assertEquals(EINVAL, c.reply().error(), "block status without a negotiated context");
        }
    }

    @Test
    void badRequestMagicOrTruncatedHeaderDisconnects() throws IOException {
        try (RawNbdClient c = connected("mem")) {
            c.out.writeInt(0xdeadbeef);
            c.out.write(new byte[24]);
            c.out.flush();
            assertTrue(c.closedByServer());
        }
        try (RawNbdClient c = connected("mem")) {
            c.out.writeInt(REQUEST_MAGIC);
            c.out.writeShort(0);
            c.out.flush();
        }
        assertServesAnotherClient();
    }

    @Test
    void clientVanishingMidWriteLeavesTheImageUntouched() throws Exception {
        try (RawNbdClient c = connected("mem")) {
            c.request(0, CMD_WRITE, 1, 4 << 20, 1 << 20, null); // header only ...
            c.out.write(pattern(300_000, 5));                   // ... and part of the payload
            c.out.flush();
        }
        try (RawNbdClient c = connected("mem")) {
            c.request(0, CMD_READ, 1, 4 << 20, 1 << 20, null);
            RawNbdClient.Reply r = c.reply();
            assertArrayEquals(new byte[1 << 20], Arrays.copyOfRange(r.payload(), 8, r.payload().length));
        }
        assertFalse(mem.allocated((4 << 20) / MemoryTarget.UNIT));
        // a client with many requests in flight that disappears
        try (RawNbdClient c = connected("mem")) {
            for (int i = 0; i < 40; i++) c.request(0, CMD_READ, i, 0, 1 << 20, null);
        }
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (server.connectionCount() > 0 && System.nanoTime() < deadline) Thread.sleep(20);
        assertEquals(0, server.connectionCount(), "connections of vanished clients are cleaned up");
        assertServesAnotherClient();
    }

    @Test
    void manyPipelinedRequestsAllGetTheirReplies() throws IOException {
        // maxInFlight is 4: the reader must stop and resume, never lose or mix up a reply
        try (RawNbdClient c = connected("mem")) {
            int n = 300;
            Thread writer = Thread.ofVirtual().start(() -> {
                try {
                    for (int i = 0; i < n; i++) {
                        if (i % 2 == 0) c.request(0, CMD_WRITE, i, (long) i * 4096, 4096, pattern(4096, i));
                        else c.request(0, CMD_READ, i, (long) (i - 1) * 4096, 4096, null);
                    }
                } catch (IOException e) {
                    throw new RuntimeException(e);
                }
            });
            Set<Long> cookies = new HashSet<>();
            for (int i = 0; i < n; i++) {
                RawNbdClient.Reply r = c.reply();
                assertEquals(0, r.error());
                assertTrue(cookies.add(r.cookie()), "duplicate reply " + r.cookie());
            }
            assertEquals(n, cookies.size());
            writer.join();
            for (int i = 0; i < n; i += 2) {
                c.request(0, CMD_READ, 1000 + i, (long) i * 4096, 4096, null);
                byte[] d = c.reply().payload();
                assertArrayEquals(pattern(4096, i), Arrays.copyOfRange(d, 8, d.length));
            }
        } catch (InterruptedException e) {
            throw new RuntimeException(e);
        }
    }

    @Test
    void discAnswersInFlightRequestsFirst() throws IOException {
        try (RawNbdClient c = connected("mem")) {
            byte[] p = pattern(1 << 20, 8);
            c.request(0, CMD_WRITE, 1, 0, p.length, p);
            c.request(0, CMD_DISC, 2, 0, 0, null);
            RawNbdClient.Reply r = c.reply();
            assertEquals(1, r.cookie());
            assertEquals(0, r.error());
            assertTrue(c.closedByServer());
        }
        assertTrue(mem.allocated(0));
    }

    @Test
    void removeExportAndCloseDisconnectClients() throws Exception {
        try (RawNbdClient c = connected("mem")) {
            assertTrue(server.removeExport("mem"));
            assertTrue(c.closedByServer());
            assertFalse(server.exportNames().contains("mem"));
            assertFalse(server.removeExport("mem"));
        }
        try (RawNbdClient c = client()) {
            c.option(OPT_GO, RawNbdClient.goData("mem"));
            assertEquals(REP_ERR_UNKNOWN, c.optionReply().type());
        }
        try (RawNbdClient c = connected("ro")) {
            server.close();
            assertTrue(c.closedByServer());
        }
        assertThrows(IOException.class, () -> new RawNbdClient(addr));
    }

    // ------------------------------------------------------------------ issue 16: small items

    /** An error chunk with this error value and exactly this message. */
    static void assertErrorChunk(RawNbdClient.Reply r, int error, String message) {
        assertEquals(error, structuredError(r));
        assertEquals(message, new String(r.payload(), 6, r.payload().length - 6, java.nio.charset.StandardCharsets.UTF_8));
    }

    @Test
    void blockStatusOfLengthZeroIsEinvalSaidAsSuch() throws IOException {
        try (RawNbdClient c = connected("mem")) {
            c.request(0, CMD_BLOCK_STATUS, 1, 0, 0, null);
            assertErrorChunk(c.reply(), EINVAL, "block status of length 0");
        }
        assertServesAnotherClient();
    }

    @Test
    void emptyExportNameServesTheDefaultExport() throws IOException {
        try (RawNbdClient c = client()) {
            c.option(OPT_GO, RawNbdClient.goData(""));
            assertEquals(REP_ERR_UNKNOWN, c.optionReply().type(), "no default export set");
        }
        server.setDefaultExport("mem");
        try (RawNbdClient c = client().go("", true, false)) {
            assertEquals(SIZE, c.exportSize);
            c.request(0, CMD_WRITE, 1, 0, 4096, pattern(4096, 5));
            assertEquals(0, c.reply().error());
        }
        byte[] b = new byte[4096];
        mem.read(0, java.lang.foreign.MemorySegment.ofArray(b));
        assertArrayEquals(pattern(4096, 5), b, "the empty name reached the default export");
    }

    @Test
    void targetErrorsReachTheClientWithoutServerDetail() throws IOException {
        io.qblk.target.BlockTarget failing = new io.qblk.target.BlockTarget() {
            @Override public long size() { return SIZE; }
            @Override public boolean readOnly() { return false; }
            @Override public void read(long offset, java.lang.foreign.MemorySegment dst) throws IOException {
                throw new IOException("/srv/secret/images/vm.qcow2 -> /etc/shadow: I/O error");
            }
            @Override public void write(long offset, java.lang.foreign.MemorySegment src, boolean fua) { }
            @Override public void flush() { }
            @Override public void discard(long offset, long length) { }
            @Override public void writeZeroes(long offset, long length, boolean mayUnmap) { }
            @Override public java.util.List<Extent> blockStatus(long offset, long length) { return java.util.List.of(); }
            @Override public void close() { }
        };
        server.addExport("failing", failing, false);
        try (RawNbdClient c = connected("failing")) {
            c.request(0, CMD_READ, 1, 4096, 4096, null);
            assertErrorChunk(c.reply(), EIO, "read at 4096+4096 failed: input/output error");
        }
        assertServesAnotherClient();
    }
}
