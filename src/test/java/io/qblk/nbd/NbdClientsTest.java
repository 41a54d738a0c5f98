package io.qblk.nbd;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.PosixFileBackend;
import io.qblk.target.BlockTarget;
import io.qblk.target.RawTarget;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Real NBD clients (qemu-io, qemu-img, nbdinfo, fio) against an in-process server. */
class NbdClientsTest implements NbdVariant {
    static final long SIZE = 64L << 20;
    @TempDir Path dir;
    Path image;
    BlockTarget raw;
    MemoryTarget sparse;
    NbdServer server;
    String base;
    Path socket;

    @BeforeEach
    void start() throws IOException {
        image = dir.resolve("disk.raw");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) { f.setLength(SIZE); }
        raw = new RawTarget(openFile(image));
        sparse = new MemoryTarget(SIZE, false);
        server = new NbdServer(variant(NbdServer.Options.defaults()));
        InetSocketAddress a = server.bindTcp("127.0.0.1", 0);
        socket = dir.resolve("nbd.sock");
        server.bindUnix(socket);
        server.addExport("disk", raw, false);
        server.addExport("sparse", sparse, false);
        server.addExport("disk-ro", raw, true);
        base = "nbd://127.0.0.1:" + a.getPort() + "/";
        assertEquals(List.of(base + "disk", "nbd+unix:///disk?socket=" + socket), server.uris("disk"));
        assertEquals(base + "a%20b", server.uris("a b").getFirst());
    }

    @AfterEach
    void stop() throws IOException {
        server.close();
        raw.close();
        assertFalse(Files.exists(socket), "unix socket file removed on close");
    }

    static Proc.Result qemuIo(String uri, String... cmds) throws Exception {
        List<String> c = new ArrayList<>(List.of("qemu-io", "-f", "raw", uri));
        for (String x : cmds) { c.add("-c"); c.add(x); }
        return Proc.run(60, c);
    }

    @Test
    void qemuIoWritesAndReadsPatternsOverTcpAndUnixSocket() throws Exception {
        Proc.Result r = qemuIo(base + "disk", "write -P 0xab 0 64k", "read -P 0xab 0 64k", "write -z 1M 128k",
                "read -P 0 1M 128k", "discard 2M 64k", "flush", "aio_write -P 0x11 4M 4k", "aio_write -P 0x22 5M 64k",
                "aio_flush", "read -P 0x11 4M 4k", "read -P 0x22 5M 64k").ok("qemu-io over tcp");
        assertFalse(r.out().contains("Pattern verification failed"), r.out());
        assertTrue(r.out().contains("read 65536/65536 bytes at offset 0"), r.out());
        Proc.Result u = qemuIo("nbd+unix:///disk?socket=" + socket, "read -P 0xab 0 64k", "write -P 0xcd 8M 1M",
                "read -P 0xcd 8M 1M").ok("qemu-io over unix socket");
        assertFalse(u.out().contains("Pattern verification failed"), u.out());
        // the bytes really are in the image file
        byte[] f = Files.readAllBytes(image);
        assertEquals((byte) 0xab, f[0]);
        assertEquals((byte) 0xab, f[65535]);
        assertEquals((byte) 0xcd, f[8 << 20]);
        assertEquals((byte) 0x11, f[4 << 20]);
        Proc.Result ro = qemuIo(base + "disk-ro", "write -P 1 0 4k");
        assertTrue(ro.out().contains("Operation not permitted") || ro.out().contains("read-only") || ro.out().contains("Permission"),
                "write to read-only export refused: " + ro.out());
        assertEquals((byte) 0xab, Files.readAllBytes(image)[0]);
    }

    @Test
    void qemuImgInfoAndMapAgreeWithTargetBlockStatus() throws Exception {
        qemuIo(base + "sparse", "write -P 1 0 128k", "write -P 2 1M 64k", "write -P 3 3M 192k").ok("qemu-io");
        Proc.Result info = Proc.run(30, "qemu-img", "info", base + "sparse").ok("qemu-img info");
        assertTrue(info.out().contains("(" + SIZE + " bytes)"), info.out());

        Proc.Result map = Proc.run(30, "qemu-img", "map", "--output=json", "-f", "raw", base + "sparse").ok("qemu-img map");
        Pattern p = Pattern.compile("\"start\": (\\d+), \"length\": (\\d+),.*?\"zero\": (true|false), \"data\": (true|false)");
        Matcher m = p.matcher(map.out());
        long covered = 0;
        int entries = 0;
        while (m.find()) {
            long start = Long.parseLong(m.group(1)), len = Long.parseLong(m.group(2));
            boolean data = Boolean.parseBoolean(m.group(4)), zero = Boolean.parseBoolean(m.group(3));
            assertEquals(covered, start);
            for (BlockTarget.Extent x : sparse.blockStatus(start, len)) {
                assertEquals(!x.hole(), data, "data flag at " + x.offset() + " in " + map.out());
                assertEquals(x.zero(), zero, "zero flag at " + x.offset());
            }
            covered += len;
            entries++;
        }
        assertEquals(SIZE, covered, map.out());
        assertEquals(6, entries, "3 data runs, 3 holes: " + map.out());

        Proc.Result nbdmap = Proc.run(30, "nbdinfo", "--map", base + "sparse").ok("nbdinfo --map");
        long pos = 0;
        for (String line : nbdmap.out().strip().split("\n")) {
            String[] f = line.trim().split("\\s+");
            long off = Long.parseLong(f[0]), len = Long.parseLong(f[1]);
            int type = Integer.parseInt(f[2]);
            assertEquals(pos, off);
            boolean hole = (type & 1) != 0;
            for (BlockTarget.Extent x : sparse.blockStatus(off, len)) assertEquals(x.hole(), hole, line);
            pos += len;
        }
        assertEquals(SIZE, pos);

        Proc.Result list = Proc.run(30, "nbdinfo", "--list", base).ok("nbdinfo --list");
        for (String n : List.of("export=\"disk\"", "export=\"sparse\"", "export=\"disk-ro\"")) assertTrue(list.out().contains(n), list.out());
        assertTrue(list.out().contains("block_size_maximum: 33554432"), list.out());
        assertTrue(list.out().contains("can_multi_conn: true"), list.out());
    }

    @Test
    void qemuImgConvertToAndFromTheExportThenCompare() throws Exception {
        Path src = dir.resolve("src.raw");
        byte[] content = new byte[(int) SIZE];
        Random rnd = new Random(42);
        for (int chunk = 0; chunk < SIZE / 65536; chunk++) {
            if (chunk % 3 == 0) continue; // leave some zero runs
            byte[] b = new byte[65536];
            rnd.nextBytes(b);
            System.arraycopy(b, 0, content, chunk * 65536, 65536);
        }
        Files.write(src, content);
        Proc.run(120, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src.toString(), base + "disk").ok("convert to export");
        Path back = dir.resolve("back.raw");
        Proc.run(120, "qemu-img", "convert", "-f", "raw", "-O", "raw", base + "disk", back.toString()).ok("convert from export");
        Proc.run(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", src.toString(), back.toString()).ok("compare round trip");
        assertEquals(0, server.connectionCount() > 0 ? waitNoConnections() : 0);
        Proc.run(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", src.toString(), image.toString()).ok("compare image file");
        Proc.run(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", src.toString(), base + "disk-ro").ok("compare against export");
    }

    private int waitNoConnections() throws InterruptedException {
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (server.connectionCount() > 0 && System.nanoTime() < deadline) Thread.sleep(10);
        return server.connectionCount();
    }

    @Test
    void fioNbdEngineVerifiesRandomWritesOnTwoConnections() throws Exception {
        Proc.Result engines = Proc.run(30, "fio", "--enghelp");
        assertTrue(engines.out().contains("nbd"), "this fio has no nbd engine: " + engines.out());
        Proc.Result r = Proc.run(120, "fio", "--name=nbdverify", "--ioengine=nbd", "--uri=" + base + "disk",
                "--rw=randwrite", "--bssplit=4k/50:64k/50", "--iodepth=32", "--numjobs=2", "--size=16m",
                "--offset_increment=16m", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--group_reporting",
                "--output-format=terse", "--terse-version=3").ok("fio nbd verify");
        assertFalse(r.out().contains("verify:"), r.out());
        String[] f = r.out().strip().split("\n");
        String[] t = f[f.length - 1].split(";");
        assertEquals("0", t[4], "fio error field: " + r.out());
        assertEquals(32L << 10, Long.parseLong(t[5]), "verify pass read back all 32 MiB the two jobs wrote: " + r.out());
        assertEquals(32L << 10, Long.parseLong(t[46]), "two jobs wrote 16 MiB each: " + r.out());
    }
}
