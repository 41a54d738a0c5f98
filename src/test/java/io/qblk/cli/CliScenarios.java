package io.qblk.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.quarkus.test.junit.main.LaunchResult;
import io.quarkus.test.junit.main.QuarkusMainLauncher;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The CLI behaviours, each a scenario run through a {@link QuarkusMainLauncher}: {@link CliCommandsTest}
 * runs one per command through a real Quarkus launch, {@link CliInProcessTest} runs all of them
 * in-process (the same picocli tree, without a Quarkus boot per call).
 */
final class CliScenarios {
    private static final ObjectMapper JSON = new ObjectMapper();

    private CliScenarios() {}

    /** Exactly one non-empty stderr line naming the problem, and no Java stack trace anywhere. */
    static void assertOneErrorLine(LaunchResult r, String expectedFragment) {
        List<String> lines = r.getErrorStream().stream().filter(l -> !l.isBlank()).toList();
        assertEquals(1, lines.size(), "expected one error line, got: " + lines + " / stdout " + r.getOutput());
        assertTrue(lines.getFirst().contains(expectedFragment), lines.getFirst() + " should contain " + expectedFragment);
        String all = r.getOutput() + r.getErrorOutput();
        assertFalse(all.contains("\tat ") || all.contains("Exception in") || all.contains("Exception:"), all);
    }

    static void createWritesQemuReadableImageAndPrintsFormattingLine(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("a.qcow2");
        LaunchResult r = launcher.launch("create", "-o", "compat=1.1,cluster_size=4k,refcount_bits=8,lazy_refcounts=on",
                img.toString(), "64M");
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        assertEquals("Formatting '" + img + "', fmt=qcow2 cluster_size=4096 extended_l2=off compression_type=zlib"
                + " size=67108864 compat=1.1 lazy_refcounts=on refcount_bits=8", r.getOutput().strip());
        JsonNode q = JSON.readTree(QemuTools.run("qemu-img", "info", "--output=json", img.toString()).expect(0).out());
        assertEquals(67108864L, q.get("virtual-size").asLong());
        assertEquals(4096, q.get("cluster-size").asInt());
        assertEquals("1.1", q.at("/format-specific/data/compat").asText());
        assertEquals(8, q.at("/format-specific/data/refcount-bits").asInt());
        assertTrue(q.at("/format-specific/data/lazy-refcounts").asBoolean());
        QemuTools.run("qemu-img", "check", img.toString()).expect(0);
    }

    static void createRawAndVersion2(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path raw = dir.resolve("r.img");
        LaunchResult r = launcher.launch("create", "-f", "raw", raw.toString(), "1M");
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        assertEquals("Formatting '" + raw + "', fmt=raw size=1048576", r.getOutput().strip());
        assertEquals(1048576L, Files.size(raw));

        Path v2 = dir.resolve("v2.qcow2");
        r = launcher.launch("create", "-o", "compat=0.10,preallocation=metadata", v2.toString(), "2M");
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        JsonNode q = JSON.readTree(QemuTools.run("qemu-img", "info", "--output=json", v2.toString()).expect(0).out());
        assertEquals("0.10", q.at("/format-specific/data/compat").asText());
        QemuTools.run("qemu-img", "check", v2.toString()).expect(0);
    }

    static void createRejectsBadInputWithoutTouchingFiles(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("b.qcow2");
        LaunchResult r = launcher.launch("create", img.toString(), "1000");
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "multiple of 512");
        assertFalse(Files.exists(img));

        r = launcher.launch("create", "-o", "bogus=1", img.toString(), "1M");
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "bogus");

        r = launcher.launch("create", "-o", "cluster_size=1000", img.toString(), "1M");
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "cluster_size");

        r = launcher.launch("create", "-o", "compat=0.10,refcount_bits=8", img.toString(), "1M");
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "refcount_bits");

        r = launcher.launch("create", img.toString(), "12Q");
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "12Q");
        assertFalse(Files.exists(img));

        Path existing = dir.resolve("existing");
        Files.write(existing, new byte[] {1, 2, 3});
        r = launcher.launch("create", existing.toString(), "1M");
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "already exists");
        assertEquals(3, Files.size(existing));
    }

    static void infoHumanAndJsonMatchQemuImg(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("i.qcow2");
        QemuTools.run("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=65536", img.toString(), "64M").expect(0);
        QemuTools.qemuIo(img, false, "write -P 0xab 0 64k").expect(0);
        LaunchResult r = launcher.launch("info", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        String human = r.getOutput();
        assertTrue(human.startsWith("image: " + img + "\nfile format: qcow2\nvirtual size: 64 MiB (67108864 bytes)\n"), human);
        assertTrue(human.contains("cluster_size: 65536\nFormat specific information:\n    compat: 1.1\n"), human);
        assertTrue(human.contains("    refcount bits: 16\n    corrupt: false\n"), human);

        r = launcher.launch("info", "--output=json", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        JsonNode mine = JSON.readTree(r.getOutput());
        JsonNode qemu = JSON.readTree(QemuTools.run("qemu-img", "info", "--output=json", img.toString()).expect(0).out());
        for (String k : List.of("virtual-size", "filename", "cluster-size", "format", "actual-size", "dirty-flag"))
            assertEquals(qemu.get(k), mine.get(k), k);
        assertEquals(qemu.get("format-specific"), mine.get("format-specific"));

        Path raw = dir.resolve("r.raw");
        QemuTools.run("qemu-img", "create", "-f", "raw", raw.toString(), "1M").expect(0);
        r = launcher.launch("info", "--output=json", raw.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        JsonNode rawInfo = JSON.readTree(r.getOutput());
        assertEquals("raw", rawInfo.get("format").asText());
        assertEquals(1048576L, rawInfo.get("virtual-size").asLong());
    }

    /** Replaces the "actual-size"/"disk size" figures, which depend on the file system, not on the tool. */
    private static String sansActualSize(String s) {
        return s.replaceAll("\"actual-size\": \\d+", "\"actual-size\": N").replaceAll("disk size: .*", "disk size: N");
    }

    /**
     * qblk info names the backing file as qemu-img does, text for text (issue 16: an image whose
     * backing file is /etc/shadow showed nothing), relative and absolute names, human and JSON.
     */
    static void infoShowsTheBackingFileLikeQemuImg(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path base = dir.resolve("base.qcow2"), top = dir.resolve("top.qcow2"), shadow = dir.resolve("shadow.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", base.toString(), "1M").expect(0);
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top.toString()).expect(0);
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw", shadow.toString(), "1M").expect(0);
        for (Path img : List.of(top, shadow)) {
            for (String output : List.of("human", "json")) {
                LaunchResult r = launcher.launch("info", "--output=" + output, img.toString());
                assertEquals(0, r.exitCode(), r.getErrorOutput());
                String qemu = QemuTools.run("qemu-img", "info", "--output=" + output, img.toString()).expect(0).out();
                assertEquals(sansActualSize(qemu).strip(), sansActualSize(r.getOutput()).strip(), img + " " + output);
            }
        }
        LaunchResult r = launcher.launch("info", shadow.toString());
        assertTrue(r.getOutput().contains("backing file: /etc/shadow\nbacking file format: raw\n"), r.getOutput());
    }

    /** A backing file name is untrusted input: the CLI refuses one that is no regular file, in one line. */
    static void aBackingDeviceNodeIsRefused(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("devzero.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/dev/zero", "-F", "raw", img.toString(), "1M").expect(0);
        byte[] before = Files.readAllBytes(img);
        LaunchResult r = launcher.launch("io", "-c", "read 0 512", img.toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "not a regular file");
        assertTrue(java.util.Arrays.equals(before, Files.readAllBytes(img)), "the image is untouched");
    }

    /** A qemu-made image with one leaked cluster (qemu-img check agrees: exit 3). */
    static Path leakyImage(Path dir) throws Exception {
        Path img = dir.resolve("leak.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "16M").expect(0);
        QemuTools.qemuIo(img, false, "write -P 0x5a 0 128k").expect(0);
        try (ImagePatcher p = new ImagePatcher(img)) {
            long cs = p.clusterSize();
            long idx = (p.length() + cs - 1) / cs;
            p.setLength((idx + 1) * cs);
            p.setRefcount(idx, 1);
        }
        QemuTools.run("qemu-img", "check", img.toString()).expect(3);
        return img;
    }

    static void checkLeakExitCodeAndRepair(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = leakyImage(dir);
        LaunchResult r = launcher.launch("check", img.toString());
        assertEquals(3, r.exitCode(), r.getOutput() + r.getErrorOutput());
        assertTrue(r.getOutput().contains("1 leaked clusters were found on the image."), r.getOutput());
        r = launcher.launch("check", "-r", "leaks", img.toString());
        assertEquals(0, r.exitCode(), r.getOutput() + r.getErrorOutput());
        QemuTools.run("qemu-img", "check", img.toString()).expect(0);
    }

    static void missingFile(QuarkusMainLauncher launcher, Path dir) {
        LaunchResult r = launcher.launch("info", "/nonexistent/qblk-missing.qcow2");
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "/nonexistent/qblk-missing.qcow2: no such file");
        r = launcher.launch("info", "--bogus", dir.resolve("x").toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "--bogus");
        r = launcher.launch("create", dir.resolve("x").toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "SIZE");
        // --help works on every command, also those with required parameters
        for (String cmd : new String[] {"create", "info", "check", "map", "io", "bench", "export"}) {
            r = launcher.launch(cmd, "--help");
            assertEquals(0, r.exitCode(), cmd + " --help: " + r.getErrorOutput());
            assertTrue(r.getOutput().contains("Usage: qblk " + cmd), cmd + " --help printed: " + r.getOutput());
        }
    }

    static void checkExitCodesCleanLeakedCorruptAndRepair(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("c.qcow2");
        QemuTools.run("qemu-img", "create", "-f", "qcow2", img.toString(), "16M").expect(0);
        QemuTools.qemuIo(img, false, "write -P 0x5a 0 128k").expect(0);
        LaunchResult r = launcher.launch("check", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        assertTrue(r.getOutput().startsWith("No errors were found on the image."), r.getOutput());
        r = launcher.launch("check", "--output=json", img.toString());
        assertEquals(0, r.exitCode());
        JsonNode j = JSON.readTree(r.getOutput());
        assertEquals(0, j.get("check-errors").asInt());
        assertEquals("qcow2", j.get("format").asText());
        assertEquals(256, j.get("total-clusters").asLong());

        // Leak: one cluster past the end of the used area with refcount 1 but no reference.
        Path leaky = dir.resolve("leak.qcow2");
        Files.copy(img, leaky);
        try (ImagePatcher p = new ImagePatcher(leaky)) {
            long cs = p.clusterSize();
            long idx = (p.length() + cs - 1) / cs;
            p.setLength((idx + 1) * cs);
            p.setRefcount(idx, 1);
        }
        QemuTools.run("qemu-img", "check", leaky.toString()).expect(3); // qemu agrees it is a leak
        r = launcher.launch("check", leaky.toString());
        assertEquals(3, r.exitCode(), r.getOutput() + r.getErrorOutput());
        assertTrue(r.getOutput().contains("1 leaked clusters were found on the image."), r.getOutput());
        r = launcher.launch("check", "--output=json", leaky.toString());
        assertEquals(3, r.exitCode());
        assertEquals(1, JSON.readTree(r.getOutput()).get("leaks").asInt());
        r = launcher.launch("check", "-r", "leaks", leaky.toString());
        assertEquals(0, r.exitCode(), r.getOutput() + r.getErrorOutput());
        assertTrue(r.getOutput().contains("1 leaked clusters"), r.getOutput());
        QemuTools.run("qemu-img", "check", leaky.toString()).expect(0);

        // Corruption: a data cluster whose refcount says free.
        Path corrupt = dir.resolve("corrupt.qcow2");
        Files.copy(img, corrupt);
        long dataCluster;
        try (ImagePatcher p = new ImagePatcher(corrupt)) {
            long l2 = p.u64(p.u64(40)) & 0x00fffffffffffe00L;
            dataCluster = (p.u64(l2) & 0x00fffffffffffe00L) / p.clusterSize();
            p.setRefcount(dataCluster, 0);
        }
        QemuTools.run("qemu-img", "check", corrupt.toString()).expect(2);
        r = launcher.launch("check", corrupt.toString());
        assertEquals(2, r.exitCode(), r.getOutput() + r.getErrorOutput());
        assertTrue(r.getOutput().contains("errors were found on the image."), r.getOutput());
        r = launcher.launch("check", "--output=json", corrupt.toString());
        assertEquals(2, r.exitCode());
        assertTrue(JSON.readTree(r.getOutput()).get("corruptions").asInt() >= 1);

        r = launcher.launch("check", "-r", "sometimes", img.toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "-r");
    }

    /**
     * Issue 16 item 6: a refcount structure beyond saving (table entry past EOF, a refcount block on
     * an L2 table, the table zeroed) is rebuilt by {@code check -r all}, which then ends clean as
     * {@code qemu-img check -r all} does from the same input: exit 0, "No errors" after the double
     * check, qemu-img check clean, and the guest data equal to the undamaged image and to qemu's
     * repair. A refcount_table_clusters too large to open is refused by both with exit 1.
     */
    static void checkRepairRebuildsBrokenRefcounts(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path good = dir.resolve("rc-good.qcow2");
        QemuTools.run("qemu-img", "create", "-f", "qcow2", good.toString(), "64M").expect(0);
        QemuTools.qemuIo(good, false, "write -P 0xab 0 4M", "write -P 0xcd 20M 1M", "write -z 30M 64k").expect(0);
        for (String damage : ImagePatcher.DAMAGES) {
            Path mine = dir.resolve("rc-" + damage + ".qcow2"), qemus = dir.resolve("rc-" + damage + "-qemu.qcow2");
            Files.copy(good, mine);
            try (ImagePatcher p = new ImagePatcher(mine)) {
                p.damageRefcounts(mine, damage);
            }
            Files.copy(mine, qemus);
            QemuTools.run("qemu-img", "check", mine.toString()).expect(2);
            QemuTools.run("qemu-img", "check", "-r", "all", qemus.toString()).expect(0);
            LaunchResult r = launcher.launch("check", "-r", "all", mine.toString());
            assertEquals(0, r.exitCode(), damage + ": " + r.getOutput() + r.getErrorOutput());
            String out = r.getOutput();
            assertTrue(out.startsWith("The following inconsistencies were found and repaired:"), damage + ": " + out);
            assertTrue(out.contains("Double checking the fixed image now...\nNo errors were found on the image."), damage + ": " + out);
            assertTrue(r.getErrorOutput().contains("Rebuilding refcount structure"), damage + ": " + r.getErrorOutput());
            QemuTools.run("qemu-img", "check", mine.toString()).expect(0);
            QemuTools.run("qemu-img", "compare", good.toString(), mine.toString()).expect(0);
            QemuTools.run("qemu-img", "compare", qemus.toString(), mine.toString()).expect(0);
            r = launcher.launch("check", mine.toString());
            assertEquals(0, r.exitCode(), damage + " after repair: " + r.getOutput() + r.getErrorOutput());
        }
        Path huge = dir.resolve("rc-huge.qcow2");
        Files.copy(good, huge);
        try (ImagePatcher p = new ImagePatcher(huge)) {
            p.u32(56, 0x00ffffff);
        }
        String before = QemuTools.sha256(huge);
        QemuTools.run("qemu-img", "check", "-r", "all", huge.toString()).expect(1);
        LaunchResult r = launcher.launch("check", "-r", "all", huge.toString());
        assertEquals(1, r.exitCode(), r.getOutput() + r.getErrorOutput());
        assertOneErrorLine(r, "refcount_table_clusters");
        assertEquals(before, QemuTools.sha256(huge), "a refused image is left untouched");
    }

    static void mapJsonAndHuman(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("m.qcow2");
        QemuTools.run("qemu-img", "create", "-f", "qcow2", img.toString(), "4M").expect(0);
        QemuTools.qemuIo(img, false, "write -P 1 0 64k", "write -z 1M 64k").expect(0);
        LaunchResult r = launcher.launch("map", "--output=json", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        JsonNode mine = JSON.readTree(r.getOutput());
        JsonNode qemu = JSON.readTree(QemuTools.run("qemu-img", "map", "--output=json", img.toString()).expect(0).out());
        assertEquals(qemu, mine);
        r = launcher.launch("map", img.toString());
        assertEquals(0, r.exitCode());
        String[] lines = r.getOutput().strip().split("\n");
        assertEquals(2, lines.length, r.getOutput());
        assertTrue(lines[0].startsWith("Offset          Length          Mapped to       File"));
        assertTrue(lines[1].startsWith("0               0x10000         0x"), lines[1]);
    }

    /**
     * Thin provisioning (issue 15): {@code io -c "discard 0 8M"} on written data and a zero with
     * unmap punch the freed clusters out of the file, so its allocated size shrinks; with
     * {@code --discard ignore} it does not. Either way qemu-img check is clean and the data right.
     */
    static void ioDiscardPunchesHoles(QuarkusMainLauncher launcher, Path dir) throws Exception {
        for (String mode : new String[] {"unmap", "ignore"}) {
            Path img = dir.resolve("thin-" + mode + ".qcow2");
            QemuTools.run("qemu-img", "create", "-f", "qcow2", img.toString(), "64M").expect(0);
            QemuTools.qemuIo(img, false, "write -P 0xab 0 8M", "write -P 0xcd 16M 2M").expect(0);
            long before = io.qblk.cli.FileStat.allocatedBytes(img);
            assertTrue(before >= 10L << 20, "written: " + before);
            LaunchResult r = launcher.launch("io", "--discard", mode, "-c", "discard 0 8M", "-c", "write -z -u 17M 1M", img.toString());
            assertEquals(0, r.exitCode(), r.getOutput() + r.getErrorOutput());
            long after = io.qblk.cli.FileStat.allocatedBytes(img);
            if (mode.equals("unmap")) assertTrue(after <= before - (9L << 20), mode + ": allocated " + before + " -> " + after + " bytes");
            else assertTrue(after >= before, mode + ": allocated " + before + " -> " + after + " bytes");
            QemuTools.run("qemu-img", "check", img.toString()).expect(0);
            String read = QemuTools.qemuIo(img, true, "read -P 0 0 8M", "read -P 0xcd 16M 1M", "read -P 0 17M 1M").expect(0).out();
            assertFalse(read.contains("Pattern verification failed"), mode + ": " + read);
        }
        LaunchResult r = launcher.launch("io", "--discard", "sometimes", "-c", "flush", dir.resolve("thin-unmap.qcow2").toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "discard mode must be");
    }

    static void ioWritesReadsVerifiesAndReportsMismatch(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("io.qcow2");
        QemuTools.run("qemu-img", "create", "-f", "qcow2", img.toString(), "8M").expect(0);
        LaunchResult r = launcher.launch("io", "-c", "write -P 0xab 0 64k", "-c", "write -z 1M 64k",
                "-c", "discard 2M 64k", "-c", "flush", "-c", "read -P 0xab 0 64k", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        List<String> out = r.getOutput().lines().toList();
        assertEquals("wrote 65536/65536 bytes at offset 0", out.get(0));
        assertTrue(out.get(1).matches("64 KiB, 1 ops; \\d\\d\\.\\d\\d sec \\(.* ops/sec\\)"), out.get(1));
        assertEquals("wrote 65536/65536 bytes at offset 1048576", out.get(2));
        assertEquals("discard 65536/65536 bytes at offset 2097152", out.get(4));
        assertEquals("read 65536/65536 bytes at offset 0", out.get(6));
        QemuTools.qemuIo(img, true, "read -P 0xab 0 64k", "read -P 0 64k 1M").expect(0);

        r = launcher.launch("io", "-r", "-c", "read -P 0xab 4k 64k", img.toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.getOutput().contains("Pattern verification failed at offset 65536, 65536 bytes"), r.getOutput());

        r = launcher.launch("io", "-c", "frobnicate 0 1", img.toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "frobnicate");
    }

    static void benchReportsIops(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("bench.qcow2");
        QemuTools.run("qemu-img", "create", "-f", "qcow2", img.toString(), "16M").expect(0);
        LaunchResult r = launcher.launch("bench", "-c", "2000", "-d", "8", "-s", "4k", "-w", "--pattern", "7",
                "-S", "12k", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        List<String> out = r.getOutput().lines().toList();
        assertEquals("Sending 2000 write requests, 4096 bytes each, 8 in parallel (starting at offset 0, step size 12288)",
                out.get(0));
        assertTrue(out.get(1).matches("Run completed in \\d+\\.\\d{3} seconds\\."), out.get(1));
        assertTrue(out.get(2).matches("IOPS: \\d+, bandwidth: [0-9.]+ MiB/s"), out.get(2));
        // offsets 0, 12k, 24k, ... modulo 16M: request 1366 wraps to 8k (16M is not a multiple of 12k)
        QemuTools.qemuIo(img, true, "read -P 7 0 4k", "read -P 7 12k 4k", "read -P 0 4k 4k", "read -P 7 8k 4k").expect(0);
        QemuTools.run("qemu-img", "check", img.toString()).expect(0);

        r = launcher.launch("bench", "-c", "500", "-d", "4", "--random", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());

        // qemu-img's cache and AIO flags: O_DIRECT + io_uring writes land like the default ones.
        r = launcher.launch("bench", "-c", "300", "-d", "8", "-w", "--pattern", "9", "-t", "none", "-i", "io_uring",
                "-o", "1M", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        QemuTools.qemuIo(img, true, "read -P 9 1M 4k", "read -P 9 " + (1024 * 1024 + 299 * 4096) + " 4k").expect(0);
        QemuTools.run("qemu-img", "check", img.toString()).expect(0);
        r = launcher.launch("bench", "-c", "10", "-t", "directsync", img.toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "none or writeback");
        r = launcher.launch("bench", "-c", "10", "-i", "native", img.toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "posix or io_uring");
    }

    static void badOutputFormatAndNotQcow2(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path raw = dir.resolve("plain.bin");
        Files.write(raw, new byte[4096]);
        LaunchResult r = launcher.launch("info", "--output=xml", raw.toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "xml");
        r = launcher.launch("check", raw.toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, "not a qcow2 image");
        r = launcher.launch("map", "-f", "qcow2", raw.toString());
        assertEquals(1, r.exitCode());
        assertOneErrorLine(r, raw.toString());
    }

    // ---- one launch each, for the Quarkus main test (a Quarkus launch costs seconds on a loaded machine) ----

    static void infoJsonOnce(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("i.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k,refcount_bits=32", img.toString(), "3M").expect(0);
        LaunchResult r = launcher.launch("info", "--output=json", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        JsonNode mine = JSON.readTree(r.getOutput());
        JsonNode qemu = JSON.readTree(QemuTools.run("qemu-img", "info", "--output=json", img.toString()).expect(0).out());
        for (String k : List.of("virtual-size", "filename", "cluster-size", "format", "dirty-flag", "format-specific"))
            assertEquals(qemu.get(k), mine.get(k), k);
    }

    static void checkLeakOnce(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = leakyImage(dir);
        LaunchResult r = launcher.launch("check", "--output=json", img.toString());
        assertEquals(3, r.exitCode(), r.getOutput() + r.getErrorOutput());
        assertEquals(1, JSON.readTree(r.getOutput()).get("leaks").asInt());
        // the whole report, field by field, as qemu-img prints it
        assertEquals(JSON.readTree(QemuTools.run("qemu-img", "check", "--output=json", img.toString()).expect(3).out()),
                JSON.readTree(r.getOutput()));
    }

    static void rawMapMatchesQemu(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path raw = dir.resolve("sparse.raw");
        QemuTools.run("qemu-img", "create", "-q", "-f", "raw", raw.toString(), "2M").expect(0);
        QemuTools.run("qemu-io", "-f", "raw", "-c", "write -P 1 0 4k", "-c", "write -P 2 1M 64k", raw.toString()).expect(0);
        LaunchResult r = launcher.launch("map", "--output=json", raw.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        assertEquals(JSON.readTree(QemuTools.run("qemu-img", "map", "--output=json", raw.toString()).expect(0).out()),
                JSON.readTree(r.getOutput()));
    }

    static void mapJsonOnce(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("m.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "4M").expect(0);
        QemuTools.qemuIo(img, false, "write -P 1 0 64k", "write -z 1M 64k").expect(0);
        LaunchResult r = launcher.launch("map", "--output=json", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        assertEquals(JSON.readTree(QemuTools.run("qemu-img", "map", "--output=json", img.toString()).expect(0).out()),
                JSON.readTree(r.getOutput()));
    }

    static void ioOnce(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("io.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "8M").expect(0);
        LaunchResult r = launcher.launch("io", "-c", "write -P 0xab 0 64k", "-c", "read -P 0xab 0 64k",
                "-c", "read -P 0xab 4k 64k", img.toString());
        assertEquals(1, r.exitCode(), r.getErrorOutput()); // the last read runs past the pattern
        List<String> out = r.getOutput().lines().toList();
        assertEquals("wrote 65536/65536 bytes at offset 0", out.get(0));
        assertEquals("read 65536/65536 bytes at offset 0", out.get(2));
        assertEquals("Pattern verification failed at offset 65536, 65536 bytes", out.get(4));
        QemuTools.qemuIo(img, true, "read -P 0xab 0 64k").expect(0);
    }

    static void benchOnce(QuarkusMainLauncher launcher, Path dir) throws Exception {
        Path img = dir.resolve("bench.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "16M").expect(0);
        LaunchResult r = launcher.launch("bench", "-c", "1000", "-d", "4", "-w", "--pattern", "9", img.toString());
        assertEquals(0, r.exitCode(), r.getErrorOutput());
        assertTrue(r.getOutput().contains("Run completed in "), r.getOutput());
        assertTrue(r.getOutput().contains("IOPS: "), r.getOutput());
        QemuTools.qemuIo(img, true, "read -P 9 0 4000k").expect(0);
    }
}
