package io.qblk.nbd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.qblk.target.BlockTarget;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The qemu metadata contexts of qblk's NBD exports against qemu-nbd's answers on the same image:
 * {@code qemu:allocation-depth} (qemu-nbd -A) on a backing chain and a raw file, and
 * {@code qemu:dirty-bitmap:NAME} (qemu-nbd -B NAME), also while writes through the export set bits.
 */
class NbdMetaContextTest implements NbdVariant {
    @TempDir Path dir;

    NbdQcow2Test.Served serve(Path image, boolean readOnly) throws Exception {
        BlockTarget t = TargetOpener.open(image, TargetOptions.defaults().withReadOnly(readOnly).withFileIo(fileIo()));
        NbdServer s = new NbdServer(variant(NbdServer.Options.defaults()));
        InetSocketAddress a = s.bindTcp("127.0.0.1", 0);
        s.addExport("e", t, readOnly);
        return new NbdQcow2Test.Served(s, t, "nbd://127.0.0.1:" + a.getPort() + "/e");
    }

    static String qemuNbdMap(Path img, String format, String context, String... qemuNbdArgs) throws Exception {
        List<String> cmd = new java.util.ArrayList<>(List.of("nbdinfo", "--map=" + context, "--", "[", "qemu-nbd", "-r", "-f", format));
        cmd.addAll(List.of(qemuNbdArgs));
        cmd.add(img.toString());
        cmd.add("]");
        return Proc.run(30, cmd).ok("qemu-nbd " + context).out();
    }

    static String qblkMap(NbdQcow2Test.Served s, String context) throws Exception {
        return Proc.run(30, "nbdinfo", "--map=" + context, s.uri()).ok("nbdinfo " + context).out();
    }

    static void sh(String... cmd) throws Exception {
        Proc.run(60, cmd).ok(String.join(" ", cmd));
    }

    @Test
    void allocationDepthOfABackingChainAndARawFile() throws Exception {
        Path base = dir.resolve("base.qcow2"), mid = dir.resolve("mid.qcow2"), top = dir.resolve("top.qcow2");
        sh("qemu-img", "create", "-q", "-f", "qcow2", base.toString(), "64M");
        sh("qemu-io", "-f", "qcow2", "-c", "write 0 1M", "-c", "write 8M 64k", "-c", "write 30M 128k", base.toString());
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", base.toString(), "-F", "qcow2", mid.toString());
        sh("qemu-io", "-f", "qcow2", "-c", "write 20M 64k", "-c", "discard 30M 64k", mid.toString());
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", mid.toString(), "-F", "qcow2", top.toString());
        sh("qemu-io", "-f", "qcow2", "-c", "write 512k 1M", "-c", "write -z 8M 4k", "-c", "write -z 40M 64k", top.toString());
        String expected = qemuNbdMap(top, "qcow2", "qemu:allocation-depth", "-A");
        assertTrue(expected.contains("backing depth 3"), expected);
        try (NbdQcow2Test.Served s = serve(top, true)) {
            assertEquals(expected, qblkMap(s, "qemu:allocation-depth"));
            String list = Proc.run(30, "nbdinfo", "--list", s.uri()).ok("nbdinfo --list").out();
            assertTrue(list.contains("base:allocation") && list.contains("qemu:allocation-depth"), list);
            // base:allocation still answers, alone and together with the qemu context
            assertTrue(qblkMap(s, "base:allocation").contains("data"));
        }
        Path raw = dir.resolve("r.raw");
        sh("qemu-img", "create", "-q", "-f", "raw", raw.toString(), "4M");
        String rawExpected = qemuNbdMap(raw, "raw", "qemu:allocation-depth", "-A");
        try (NbdQcow2Test.Served s = serve(raw, true)) {
            assertEquals(rawExpected, qblkMap(s, "qemu:allocation-depth"));
        }
    }

    private Path withBitmaps(String name) throws Exception {
        Path img = dir.resolve(name);
        sh("qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "64M");
        sh("qemu-img", "bitmap", "--add", img.toString(), "b0");
        sh("qemu-img", "bitmap", "--add", "-g", "256k", img.toString(), "b1");
        sh("qemu-io", "-f", "qcow2", "-c", "write 0 4k", "-c", "write 3M 700k", "-c", "write -z 63M 1M", img.toString());
        return img;
    }

    @Test
    void dirtyBitmapsAsQemuNbdServesThem() throws Exception {
        Path img = withBitmaps("bm.qcow2");
        Path ref = dir.resolve("ref.qcow2");
        Files.copy(img, ref, StandardCopyOption.REPLACE_EXISTING);
        for (String b : List.of("b0", "b1")) {
            String expected = qemuNbdMap(img, "qcow2", "qemu:dirty-bitmap:" + b, "-B", b);
            assertTrue(expected.contains("dirty"), expected);
            try (NbdQcow2Test.Served s = serve(img, true)) {
                assertEquals(expected, qblkMap(s, "qemu:dirty-bitmap:" + b), b);
            }
        }
        // writes through a read-write export set bits that the export serves at once and close stores
        String[] ops = {"write 10M 64k", "write -z 20M 192k", "discard 40M 1M"};
        try (NbdQcow2Test.Served s = serve(img, false)) {
            List<String> cmd = new java.util.ArrayList<>(List.of("qemu-io", "-f", "raw", s.uri()));
            for (String op : ops) { cmd.add("-c"); cmd.add(op); }
            Proc.run(60, cmd).ok("qemu-io over nbd");
            List<String> refCmd = new java.util.ArrayList<>(List.of("qemu-io", "-f", "qcow2"));
            for (String op : ops) { refCmd.add("-c"); refCmd.add(op); }
            refCmd.add(ref.toString());
            Proc.run(60, refCmd).ok("qemu-io on the reference");
            assertEquals(qemuNbdMap(ref, "qcow2", "qemu:dirty-bitmap:b0", "-B", "b0"), qblkMap(s, "qemu:dirty-bitmap:b0"), "live bits");
        }
        for (String b : List.of("b0", "b1"))
            assertEquals(qemuNbdMap(ref, "qcow2", "qemu:dirty-bitmap:" + b, "-B", b), qemuNbdMap(img, "qcow2", "qemu:dirty-bitmap:" + b, "-B", b), "stored " + b);
        String check = Proc.run(30, "qemu-img", "check", img.toString()).ok("qemu-img check").out();
        assertTrue(check.contains("No errors were found"), check);
    }

    /** Holes of a sparse raw file, as a backing file and as an export: zero/hole, as qemu-img map and qemu-nbd say. */
    @Test
    void holesOfASparseRawFile() throws Exception {
        Path raw = dir.resolve("sparse.raw"), top = dir.resolve("over-raw.qcow2");
        sh("truncate", "-s", "8M", raw.toString());
        sh("qemu-io", "-f", "raw", "-c", "write -P 1 1M 64k", "-c", "write -P 0 3M 64k", "-c", "write -P 2 8128k 64k", raw.toString());
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", raw.toString(), "-F", "raw", top.toString());
        sh("qemu-io", "-f", "qcow2", "-c", "write 0 64k", "-c", "write 1088k 64k", top.toString());
        String qemuMap = Proc.run(30, "qemu-img", "map", "--output=json", top.toString()).ok("qemu-img map").out().strip();
        assertTrue(qemuMap.contains("\"depth\": 1, \"present\": true, \"zero\": true, \"data\": false"), qemuMap);
        try (io.qblk.qcow2.Qcow2Image img = io.qblk.qcow2.Qcow2Image.open(top, io.qblk.qcow2.OpenOptions.defaults().withReadOnly(true))) {
            assertEquals(qemuMap, io.qblk.json.QemuJson.mapText(img.map(0, img.virtualSize())).strip());
        }
        String expected = qemuNbdMap(top, "qcow2", "base:allocation");
        try (NbdQcow2Test.Served s = serve(top, true)) {
            assertEquals(expected, qblkMap(s, "base:allocation"));
        }
        String rawExpected = qemuNbdMap(raw, "raw", "base:allocation");
        assertTrue(rawExpected.contains("hole,zero"), rawExpected);
        try (NbdQcow2Test.Served s = serve(raw, true)) {
            assertEquals(rawExpected, qblkMap(s, "base:allocation"));
        }
    }
}
