package io.qblk.nbd;

import static io.qblk.nbd.NbdProtocol.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.integers;
import static org.quicktheories.generators.SourceDSL.lists;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Random sequences of NBD commands (QuickTheories) against a byte-array model: every READ returns
 * what the model holds, BLOCK_STATUS never calls non-zero data a zero hole, and a second
 * connection sees the same bytes (CAN_MULTI_CONN: one shared target).
 */
class NbdModelPropertyTest {
    static final int SIZE = 4 << 20;
    static NbdServer server;
    static InetSocketAddress addr;
    static int exportNo;

    @BeforeAll
    static void start() throws IOException {
        server = new NbdServer(8);
        addr = server.bindTcp("127.0.0.1", 0);
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    @Test
    void randomCommandSequencesMatchTheModel() {
        qt().withExamples(40).withShrinkCycles(50)
                .forAll(lists().of(integers().all()).ofSizeBetween(1, 60))
                .checkAssert(ops -> {
                    try {
                        run(ops);
                    } catch (IOException e) {
                        throw new UncheckedIOException(e);
                    }
                });
    }

    private static void run(List<Integer> ops) throws IOException {
        String name = "m" + (exportNo++);
        MemoryTarget t = new MemoryTarget(SIZE, false);
        server.addExport(name, t, false);
        byte[] model = new byte[SIZE];
        boolean[] unknown = new boolean[SIZE / 512]; // after TRIM the contents are unspecified
        try (RawNbdClient a = new RawNbdClient(addr).hello().go(name, true, true);
             RawNbdClient b = new RawNbdClient(addr).hello().go(name, true, true)) {
            long cookie = 0;
            for (int op : ops) {
                int kind = Math.floorMod(op, 6);
                int sector = Math.floorMod(op >>> 3, SIZE / 512);
                int sectors = 1 + Math.floorMod(op >>> 16, 256);
                if (sector + sectors > SIZE / 512) sectors = SIZE / 512 - sector;
                int off = sector * 512, len = sectors * 512;
                RawNbdClient c = (op & 0x40000000) != 0 ? b : a;
                cookie++;
                switch (kind) {
                    case 0, 1 -> { // WRITE (sometimes FUA)
                        byte[] p = new byte[len];
                        Arrays.fill(p, (byte) (op >>> 24 | 1));
                        c.request(kind == 1 ? CMD_FLAG_FUA : 0, CMD_WRITE, cookie, off, len, p);
                        assertEquals(0, c.reply().error());
                        System.arraycopy(p, 0, model, off, len);
                        Arrays.fill(unknown, sector, sector + sectors, false);
                    }
                    case 2 -> { // READ
                        c.request(0, CMD_READ, cookie, off, len, null);
                        RawNbdClient.Reply r = c.reply();
                        assertEquals(cookie, r.cookie());
                        assertEquals(REPLY_TYPE_OFFSET_DATA, r.type());
                        for (int s = 0; s < sectors; s++) {
                            if (unknown[sector + s]) continue;
                            int at = s * 512;
                            assertArrayEquals(Arrays.copyOfRange(model, off + at, off + at + 512),
                                    Arrays.copyOfRange(r.payload(), 8 + at, 8 + at + 512), "sector " + (sector + s));
                        }
                    }
                    case 3 -> { // TRIM
                        c.request(0, CMD_TRIM, cookie, off, len, null);
                        assertEquals(0, c.reply().error());
                        Arrays.fill(unknown, sector, sector + sectors, true);
                    }
                    case 4 -> { // WRITE_ZEROES, with or without NO_HOLE
                        c.request((op & 0x100) != 0 ? CMD_FLAG_NO_HOLE : 0, CMD_WRITE_ZEROES, cookie, off, len, null);
                        assertEquals(0, c.reply().error());
                        Arrays.fill(model, off, off + len, (byte) 0);
                        Arrays.fill(unknown, sector, sector + sectors, false);
                    }
                    default -> { // BLOCK_STATUS: a range reported as zero must read as zero
                        c.request(0, CMD_BLOCK_STATUS, cookie, off, len, null);
                        RawNbdClient.Reply r = c.reply();
                        assertEquals(REPLY_TYPE_BLOCK_STATUS, r.type());
                        ByteBuffer d = ByteBuffer.wrap(r.payload());
                        assertEquals(1, d.getInt());
                        long pos = off;
                        while (d.hasRemaining()) {
                            long l = Integer.toUnsignedLong(d.getInt());
                            int flags = d.getInt();
                            assertTrue(l > 0 && pos + l <= off + len, "descriptor inside the request");
                            if ((flags & STATE_ZERO) != 0) {
                                for (long x = pos; x < pos + l; x += 512) {
                                    if (unknown[(int) (x / 512)]) continue;
                                    for (int i = 0; i < 512; i++) assertEquals(0, model[(int) x + i], "zero extent at " + x);
                                }
                            }
                            pos += l;
                        }
                    }
                }
            }
            // everything both connections see agrees with the model
            for (RawNbdClient c : List.of(a, b)) {
                c.request(0, CMD_FLUSH, ++cookie, 0, 0, null);
                assertEquals(0, c.reply().error());
                c.request(0, CMD_READ, ++cookie, 0, SIZE, null);
                byte[] all = c.reply().payload();
                for (int s = 0; s < SIZE / 512; s++) {
                    if (unknown[s]) continue;
                    int at = s * 512;
                    assertArrayEquals(Arrays.copyOfRange(model, at, at + 512), Arrays.copyOfRange(all, 8 + at, 8 + at + 512), "sector " + s);
                }
            }
        } finally {
            server.removeExport(name);
        }
    }
}
