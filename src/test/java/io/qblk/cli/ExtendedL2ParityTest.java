package io.qblk.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Extended L2 entries (subclusters) against qemu as the oracle: images made by qemu-img with
 * {@code extended_l2=on}, with and without a backing file; the same qemu-io command sequence
 * (subcluster-sized, unaligned, zero, discard) run by qemu-io on one copy and by {@code qblk io}
 * on the other: qemu-img compare equal, qemu-img check clean on both, qemu-img map equal (host
 * offsets included), and qblk map equal to qemu-img map.
 */
class ExtendedL2ParityTest {
    @TempDir
    Path dir;

    /**
     * 64 KiB clusters, 2 KiB subclusters. Discards of allocated clusters come last: qemu reuses a
     * freed cluster at once, qblk only after the next flush (docs/ordering.md R4), so an allocation
     * after a discard lands elsewhere (same contents, different host offset).
     */
    private static final String[] OPS = {
            "write -P 1 0 2k",          // one subcluster of a new cluster
            "write -P 2 70k 3k",        // unaligned, two partial subclusters
            "write -z 128k 4k",         // zero subclusters of an unallocated cluster
            "write -z 192k 64k",        // whole-cluster zero
            "write -P 3 256k 64k",      // whole cluster
            "discard 260k 8k",          // sub-cluster discard: ignored, as qemu
            "discard 320k 64k",         // discard of an unallocated cluster
            "write -P 4 384k 64k",
            "write -z 392k 4k",         // zero subclusters of an allocated cluster (keeps the offset)
            "write -P 5 393k 1k",       // partial write into a zero subcluster
            "write -z 1k 2k",           // partial zero over an allocated and an unallocated subcluster
            "write -P 6 500k 100k",     // spans clusters, unaligned both ends
            "write -P 7 1000k 3000",
            "write -z 1030k 5k",        // partial zero where the backing file reads as zero
            "write -z 1040k 1k",
            "write -z 1500k 30k",       // straddles a cluster boundary without a whole cluster
            "write -P 8 3M 17k",
            "write -z 3076k 512",       // partial zero inside allocated data: zero bytes
            "write -z 2000k 1k",        // with a backing file holding data there: zero bytes written
            "write -z -u 384k 64k",     // zero with unmap frees the cluster
            "discard 512k 64k",         // discard of an allocated cluster
            "discard 3M 64k",
    };

    @Test
    void sameSequenceAsQemuIoWithoutBacking() {
        parity(null);
    }

    @Test
    void sameSequenceAsQemuIoWithBacking() {
        Path base = dir.resolve("base.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", base.toString(), "4M").expect(0);
        QemuTools.qemuIo(base, false, "write -P 9 0 4M", "write -z 1M 256k").expect(0);
        parity(base);
    }

    private void parity(Path base) {
        Path a = dir.resolve("qemu.qcow2"), b = dir.resolve("qblk.qcow2");
        List<String> create = new ArrayList<>(List.of("qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on"));
        if (base != null) create.addAll(List.of("-b", base.toString(), "-F", "qcow2"));
        create.addAll(List.of(a.toString(), "4M"));
        QemuTools.run(create).expect(0);
        try {
            Files.copy(a, b);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        QemuTools.qemuIo(a, false, OPS).expect(0);
        List<String> io = new ArrayList<>(List.of("io"));
        for (String op : OPS) io.addAll(List.of("-c", op));
        io.add(b.toString());
        QblkRunner.Result r = QblkRunner.run(io.toArray(String[]::new));
        assertEquals(0, r.exitCode(), r.err());

        QemuTools.run("qemu-img", "compare", a.toString(), b.toString()).expect(0);
        for (Path p : List.of(a, b)) {
            String check = QemuTools.run("qemu-img", "check", p.toString()).expect(0).out();
            assertTrue(check.contains("No errors were found on the image."), check);
        }
        String qemuMap = QemuTools.run("qemu-img", "map", "--output=json", a.toString()).expect(0).out();
        String ourImageMap = QemuTools.run("qemu-img", "map", "--output=json", b.toString()).expect(0).out();
        assertEquals(qemuMap, ourImageMap);
        assertTrue(qemuMap.contains("\"length\": 2048,"), "subcluster-granular extents expected:\n" + qemuMap);
        QblkRunner.Result m = QblkRunner.run("map", "--output=json", b.toString());
        assertEquals(0, m.exitCode(), m.err());
        assertEquals(ourImageMap, m.out());
        QblkRunner.Result c = QblkRunner.run("check", b.toString());
        assertEquals(0, c.exitCode(), c.out() + c.err());
        String qblkRead = QblkRunner.run("compare", a.toString(), b.toString()).out();
        assertTrue(qblkRead.contains("Images are identical."), qblkRead);
    }

    @Test
    void measureCountsSixteenByteEntries() {
        for (String o : List.of("extended_l2=on,cluster_size=16k", "extended_l2=on", "extended_l2=off,cluster_size=16k")) {
            String q = QemuTools.run("qemu-img", "measure", "-O", "qcow2", "-o", o, "--size", "1G").expect(0).out();
            QblkRunner.Result r = QblkRunner.run("measure", "-O", "qcow2", "-o", o, "--size", "1G");
            assertEquals(0, r.exitCode(), r.err());
            assertEquals(q, r.out(), o);
        }
    }

    @Test
    void createInfoAndCheckOfInvalidBitmaps() throws Exception {
        Path ours = dir.resolve("ours.qcow2"), theirs = dir.resolve("theirs.qcow2");
        QblkRunner.Result r = QblkRunner.run("create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=32k", ours.toString(), "3M");
        assertEquals(0, r.exitCode(), r.err());
        QemuTools.Result q = QemuTools.run("qemu-img", "create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=32k", theirs.toString(), "3M").expect(0);
        assertEquals(q.out().replace(theirs.toString(), "X"), r.out().replace(ours.toString(), "X"));
        assertEquals(QemuTools.sha256(theirs), QemuTools.sha256(ours), "header and initial layout byte for byte qemu-img's");
        String info = QblkRunner.run("info", "--output=json", ours.toString()).out();
        assertTrue(info.contains("\"extended-l2\": true"), info);
        String qinfo = QemuTools.run("qemu-img", "info", "--output=json", ours.toString()).expect(0).out();
        assertTrue(qinfo.contains("\"extended-l2\": true"), qinfo);

        QblkRunner.Result small = QblkRunner.run("create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=8k", dir.resolve("s.qcow2").toString(), "1M");
        QemuTools.Result qsmall = QemuTools.run("qemu-img", "create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=8k", dir.resolve("t.qcow2").toString(), "1M");
        assertEquals(qsmall.exitCode(), small.exitCode());
        assertTrue(small.err().contains("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes"), small.err());

        // alloc & zero both set, and allocation bits in an unallocated cluster: 2 corruptions for both tools
        QemuTools.qemuIo(theirs, false, "write -P 1 0 32k", "write -P 1 32k 4k").expect(0);
        try (var ch = java.nio.channels.FileChannel.open(theirs, java.nio.file.StandardOpenOption.READ, java.nio.file.StandardOpenOption.WRITE)) {
            java.nio.ByteBuffer h = java.nio.ByteBuffer.allocate(48);
            ch.read(h, 0);
            long l1 = h.getLong(40);
            java.nio.ByteBuffer e = java.nio.ByteBuffer.allocate(8);
            ch.read(e, l1);
            long l2 = e.getLong(0) & 0x00fffffffffffe00L;
            java.nio.ByteBuffer bm = java.nio.ByteBuffer.allocate(8);
            ch.read(bm, l2 + 8);
            bm.putLong(0, bm.getLong(0) | (1L << 32)).rewind();
            ch.write(bm, l2 + 8);
            ch.write(java.nio.ByteBuffer.allocate(8).putLong(0, 0xf), l2 + 2 * 16 + 8);
        }
        QemuTools.Result qc = QemuTools.run("qemu-img", "check", theirs.toString());
        QblkRunner.Result oc = QblkRunner.run("check", theirs.toString());
        assertEquals(2, qc.exitCode());
        assertEquals(qc.exitCode(), oc.exitCode());
        assertTrue(oc.out().contains("2 errors were found on the image."), oc.out());
        QblkRunner.Result read = QblkRunner.run("io", "-c", "read 0 4k", theirs.toString());
        assertTrue(read.exitCode() != 0 && read.err().contains("subclusters both allocated and zero"), read.err());
    }
}
