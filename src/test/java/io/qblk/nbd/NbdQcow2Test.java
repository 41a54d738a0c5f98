package io.qblk.nbd;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.target.BlockTarget;
import io.qblk.target.Qcow2Target;
import io.qblk.target.TargetOpener;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** qcow2 images (the pure-Java engine) exported over NBD to qemu-img, qemu-io, nbdinfo and fio. */
class NbdQcow2Test implements NbdVariant {
    static final long SIZE = 64L << 20;
    @TempDir Path dir;

    record Served(NbdServer server, BlockTarget target, String uri) implements AutoCloseable {
        @Override
        public void close() throws Exception {
            server.close();
            target.flush();
            target.close();
        }
    }

    Served serve(Path image, boolean readOnly) throws Exception {
        BlockTarget t = TargetOpener.open(image, io.qblk.target.TargetOptions.defaults().withReadOnly(readOnly).withFileIo(fileIo()));
        assertInstanceOf(Qcow2Target.class, t, "qcow2 detected by its magic");
        NbdServer s = new NbdServer(variant(NbdServer.Options.defaults()));
        InetSocketAddress a = s.bindTcp("127.0.0.1", 0);
        s.addExport("q", t, readOnly);
        return new Served(s, t, "nbd://127.0.0.1:" + a.getPort() + "/q");
    }

    Path qcow2(String name) throws Exception {
        Path p = dir.resolve(name);
        Proc.run(30, "qemu-img", "create", "-q", "-f", "qcow2", p.toString(), String.valueOf(SIZE)).ok("qemu-img create");
        return p;
    }

    /** [start, length, data] runs of a `qemu-img map --output=json`, adjacent runs with equal data merged. */
    static List<long[]> dataRuns(String json) {
        Matcher m = Pattern.compile("\"start\": (\\d+), \"length\": (\\d+),.*?\"data\": (true|false)").matcher(json);
        java.util.ArrayList<long[]> out = new java.util.ArrayList<>();
        while (m.find()) {
            long s = Long.parseLong(m.group(1)), l = Long.parseLong(m.group(2)), d = Boolean.parseBoolean(m.group(3)) ? 1 : 0;
            if (!out.isEmpty() && out.getLast()[2] == d && out.getLast()[0] + out.getLast()[1] == s) out.getLast()[1] += l;
            else out.add(new long[] {s, l, d});
        }
        return out;
    }

    @Test
    void qemuIoAndMapOverNbdAgreeWithTheImageFile() throws Exception {
        Path img = qcow2("a.qcow2");
        String nbdMap;
        try (Served s = serve(img, false)) {
            Proc.Result r = Proc.run(60, "qemu-io", "-f", "raw", s.uri(), "-c", "write -P 0xab 0 64k", "-c", "read -P 0xab 0 64k",
                    "-c", "write -P 0x12 1M 192k", "-c", "write -P 0x34 10M 4k", "-c", "write -z 20M 1M",
                    "-c", "read -P 0x12 1M 192k", "-c", "read -P 0x34 10M 4k", "-c", "read -P 0 20M 1M").ok("qemu-io");
            assertFalse(r.out().contains("Pattern verification failed"), r.out());
            nbdMap = Proc.run(30, "qemu-img", "map", "--output=json", "-f", "raw", s.uri()).ok("map over nbd").out();
            // block status from the target itself
            long pos = 0;
            for (BlockTarget.Extent x : s.target().blockStatus(0, SIZE)) { assertEquals(pos, x.offset()); pos += x.length(); }
            assertEquals(SIZE, pos);
            Proc.Result info = Proc.run(30, "nbdinfo", "--map", s.uri()).ok("nbdinfo --map");
            assertTrue(info.out().contains("data"), info.out());
        }
        Proc.run(30, "qemu-img", "check", img.toString()).ok("qemu-img check after export");
        String fileMap = Proc.run(30, "qemu-img", "map", "--output=json", img.toString()).ok("map of file").out();
        List<long[]> a = dataRuns(nbdMap), b = dataRuns(fileMap);
        assertEquals(b.size(), a.size(), "nbd map " + nbdMap + "\nfile map " + fileMap);
        for (int i = 0; i < a.size(); i++) assertArrayEquals(b.get(i), a.get(i), "run " + i);
        assertTrue(a.size() >= 6, "three data runs separated by holes: " + nbdMap);
        // and `qblk map` of the file tells the same story
        java.io.StringWriter qmap = new java.io.StringWriter();
        picocli.CommandLine cl = io.qblk.cli.QblkMain.commandLine(picocli.CommandLine.defaultFactory());
        cl.setOut(new java.io.PrintWriter(qmap, true));
        assertEquals(0, cl.execute("map", "--output=json", img.toString()));
        List<long[]> c = dataRuns(qmap.toString());
        assertEquals(a.size(), c.size(), "qblk map " + qmap);
        for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), c.get(i), "qblk map run " + i);
        Proc.Result verify = Proc.run(30, "qemu-io", "-r", "-f", "qcow2", img.toString(), "-c", "read -P 0xab 0 64k",
                "-c", "read -P 0x34 10M 4k").ok("qemu-io on the file");
        assertFalse(verify.out().contains("Pattern verification failed"), verify.out());
    }

    @Test
    void convertToAndFromTheExportThenCompareAndCheck() throws Exception {
        Path src = dir.resolve("src.raw");
        byte[] content = new byte[(int) SIZE];
        Random rnd = new Random(7);
        for (int chunk = 0; chunk < SIZE / 65536; chunk++) {
            if (chunk % 4 == 1) continue;
            byte[] b = new byte[65536];
            rnd.nextBytes(b);
            System.arraycopy(b, 0, content, chunk * 65536, 65536);
        }
        Files.write(src, content);
        Path img = qcow2("b.qcow2");
        try (Served s = serve(img, false)) {
            Proc.run(120, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src.toString(), s.uri()).ok("convert to export");
        }
        Proc.run(30, "qemu-img", "check", img.toString()).ok("check");
        Proc.run(60, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", src.toString(), img.toString()).ok("compare file");
        try (Served s = serve(img, true)) {
            Path back = dir.resolve("back.qcow2");
            Proc.run(120, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", s.uri(), back.toString()).ok("convert from export");
            Proc.run(60, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", src.toString(), back.toString()).ok("compare round trip");
            Proc.Result w = Proc.run(30, "qemu-io", "-f", "raw", s.uri(), "-c", "write 0 4k");
            assertNotEquals(0, w.exit(), "read-only export refuses writes: " + w.out());
        }
        Proc.run(60, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", src.toString(), img.toString()).ok("image unchanged");
    }

    @Test
    void fioVerifiesRandomWritesOnTwoConnections() throws Exception {
        Path img = qcow2("c.qcow2");
        try (Served s = serve(img, false)) {
            Proc.Result r = Proc.run(120, "fio", "--name=q", "--ioengine=nbd", "--uri=" + s.uri(), "--rw=randwrite",
                    "--bssplit=4k/50:64k/50", "--iodepth=32", "--numjobs=2", "--size=16m", "--offset_increment=16m",
                    "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--group_reporting",
                    "--output-format=terse", "--terse-version=3").ok("fio");
            String[] l = r.out().strip().split("\n");
            String[] t = l[l.length - 1].split(";");
            assertEquals("0", t[4], r.out());
            assertEquals(32L << 10, Long.parseLong(t[5]), "verified all written data: " + r.out());
        }
        Proc.run(30, "qemu-img", "check", img.toString()).ok("qemu-img check after fio");
    }
}
