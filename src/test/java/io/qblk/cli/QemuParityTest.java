package io.qblk.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * compare, measure, convert, create -b and info --backing-chain against qemu-img as the oracle: the
 * same messages, figures and exit codes; converted images that qemu-img compares identical, checks
 * clean and maps as sparse as its own convert output; overlays whose headers are byte for byte
 * qemu-img's.
 */
class QemuParityTest {
    @TempDir
    Path dir;

    private Path qcow2(String name, String size, String... ioCommands) {
        Path p = dir.resolve(name);
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", p.toString(), size).expect(0);
        if (ioCommands.length > 0) QemuTools.qemuIo(p, false, ioCommands).expect(0);
        return p;
    }

    /** A partly written image: a whole cluster, a zero-pattern cluster, a zero cluster, a 700-byte write, scattered sectors. */
    private Path partly(String name) {
        return qcow2(name, "8M", "write -P 1 1M 64k", "write -P 0 2M 64k", "write -z 3M 64k", "write -P 3 4M 700",
                "write -P 4 5M 4k", "write -P 5 5128k 512", "write -P 6 6M 512", "write -P 6 6292992 512");
    }

    private static List<String> cmd(String tool, String... args) {
        List<String> c = new ArrayList<>(List.of(tool));
        c.addAll(Arrays.asList(args));
        return c;
    }

    private static String[] concat(String[] a, String... b) {
        String[] r = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }

    /** qemu-img map JSON without host offsets (qblk's allocator may place clusters elsewhere). */
    private static String mapShape(Path img, String fmt) {
        return QemuTools.run("qemu-img", "map", "--output=json", "-f", fmt, img.toString()).expect(0).out()
                .replaceAll(", \"offset\": [0-9]+", "");
    }

    // ------------------------------------------------------------------ compare

    @Test
    void compareMatchesQemuImgMessagesAndExitCodes() throws Exception {
        Path a = partly("a.qcow2");
        Path same = dir.resolve("same.qcow2");
        QemuTools.run("qemu-img", "convert", "-O", "qcow2", a.toString(), same.toString()).expect(0);
        Path raw = dir.resolve("a.raw");
        QemuTools.run("qemu-img", "convert", "-O", "raw", a.toString(), raw.toString()).expect(0);
        Path differs = dir.resolve("differs.qcow2");
        Files.copy(same, differs);
        QemuTools.qemuIo(differs, false, "write -P 9 4195404 1").expect(0);
        Path zeroData = qcow2("zd.qcow2", "8M", "write -P 0 0 8M"); // zeroes written as data: same contents as empty
        Path empty = qcow2("empty.qcow2", "8M");
        Path bigger = qcow2("big.qcow2", "12M");
        Path biggerTail = qcow2("bigtail.qcow2", "12M", "write -P 7 10M 512");
        Path overlay = dir.resolve("ov.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", a.toString(), "-F", "qcow2", overlay.toString()).expect(0);

        String[][] pairs = {
                {a.toString(), same.toString()}, {a.toString(), raw.toString()}, {"-s", a.toString(), raw.toString()},
                {a.toString(), differs.toString()}, {differs.toString(), a.toString()}, {"-s", a.toString(), same.toString()},
                {empty.toString(), zeroData.toString()}, {"-s", empty.toString(), zeroData.toString()},
                {empty.toString(), bigger.toString()}, {"-s", empty.toString(), bigger.toString()},
                {empty.toString(), biggerTail.toString()}, {biggerTail.toString(), empty.toString()},
                {a.toString(), overlay.toString()}, {"-s", a.toString(), overlay.toString()}, {empty.toString(), a.toString()},
                {"-f", "raw", "-F", "qcow2", raw.toString(), a.toString()}, {"-q", a.toString(), differs.toString()},
                {a.toString(), a.toString()}, {"-s", overlay.toString(), overlay.toString()}, // one file opened twice, read-only: the locks share
        };
        for (String[] args : pairs) {
            QemuTools.Result q = QemuTools.run(cmd("qemu-img", concat(new String[] {"compare"}, args)));
            QblkRunner.Result m = QblkRunner.run(concat(new String[] {"compare"}, args));
            assertEquals(q.out(), m.out(), "stdout of compare " + String.join(" ", args));
            assertEquals(q.exitCode(), m.exitCode(), "exit code of compare " + String.join(" ", args) + ": " + m.err());
        }
        // the outcomes themselves, so the matrix above cannot pass with both tools broken the same way
        assertEquals(0, QblkRunner.run("compare", a.toString(), raw.toString()).exitCode());
        QblkRunner.Result r = QblkRunner.run("compare", a.toString(), differs.toString());
        assertEquals(1, r.exitCode());
        assertEquals("Content mismatch at offset " + (4 * 1048576 + 1024) + "!\n", r.out());

        QblkRunner.Result missing = QblkRunner.run("compare", a.toString(), dir.resolve("nope").toString());
        assertEquals(2, missing.exitCode());
        assertEquals(2, QemuTools.run("qemu-img", "compare", a.toString(), dir.resolve("nope").toString()).exitCode());
        assertEquals(1, missing.err().lines().count(), missing.err());
        assertTrue(missing.err().contains("nope: no such file"), missing.err());
    }

    @Test
    void progressBytesMatchQemuImgWhenNotATerminal() throws Exception {
        Path src = qcow2("p.qcow2", "64M", "write -P 1 0 20M", "write -P 2 40M 10M");
        Path q = dir.resolve("q.qcow2"), m = dir.resolve("m.qcow2");
        QemuTools.Result qc = QemuTools.run("qemu-img", "convert", "-p", "-O", "qcow2", src.toString(), q.toString()).expect(0);
        QblkRunner.Result mc = QblkRunner.run("convert", "-p", "-O", "qcow2", src.toString(), m.toString());
        assertEquals(0, mc.exitCode(), mc.err());
        assertTrue(qc.out().startsWith("    (0.00/100%)\r") && qc.out().endsWith("    (100.00/100%)\r\n"), qc.out());
        assertEquals(qc.out(), mc.out());
        QemuTools.Result qm = QemuTools.run("qemu-img", "compare", "-p", src.toString(), q.toString()).expect(0);
        QblkRunner.Result mm = QblkRunner.run("compare", "-p", src.toString(), m.toString());
        assertEquals(0, mm.exitCode(), mm.err());
        assertEquals(qm.out(), mm.out());
    }

    @Test
    void progressOnATerminalDrawsABar() {
        StringWriter sw = new StringWriter();
        Progress p = new Progress(new PrintWriter(sw), true, true, 1.0);
        p.start();
        p.advance(1, 2);
        p.finish();
        String[] frames = sw.toString().split("\r");
        assertEquals("    (0.00/100%) [" + " ".repeat(40) + "]", frames[0]);
        assertEquals("    (50.00/100%) [" + "#".repeat(20) + " ".repeat(20) + "]", frames[1]);
        assertEquals("    (100.00/100%) [" + "#".repeat(40) + "]", frames[2]);
        assertEquals("\n", frames[3]);
        StringWriter off = new StringWriter();
        Progress disabled = new Progress(new PrintWriter(off), false, true, 1.0);
        disabled.start();
        disabled.finish();
        assertEquals("", off.toString());
    }

    // ------------------------------------------------------------------ measure

    @Test
    void measureMatchesQemuImg() throws Exception {
        Path empty = qcow2("e.qcow2", "64M");
        Path partly = partly("p.qcow2");
        Path full = qcow2("f.qcow2", "16M", "write -P 1 0 16M");
        Path raw = dir.resolve("r.raw");
        QemuTools.run("qemu-img", "create", "-q", "-f", "raw", raw.toString(), "10M").expect(0);
        QemuTools.run("qemu-io", "-f", "raw", "-c", "write -P 1 4k 4k", "-c", "write -P 2 5M 100k", raw.toString()).expect(0);
        Path bitmaps = qcow2("b.qcow2", "64M", "write -P 1 0 1M");
        QemuTools.run("qemu-img", "bitmap", "--add", bitmaps.toString(), "bm0").expect(0);
        QemuTools.run("qemu-img", "bitmap", "--add", "-g", "512k", bitmaps.toString(), "a-longer-bitmap-name").expect(0);

        List<String[]> optionSets = List.of(new String[] {}, new String[] {"-O", "qcow2"},
                new String[] {"-O", "qcow2", "--output=json"}, new String[] {"-O", "raw", "--output=json"},
                new String[] {"-O", "qcow2", "-o", "cluster_size=512"}, new String[] {"-O", "qcow2", "-o", "cluster_size=4k,refcount_bits=1"},
                new String[] {"-O", "qcow2", "-o", "cluster_size=2M", "--output=json"}, new String[] {"-O", "qcow2", "-o", "compat=0.10"},
                new String[] {"-O", "qcow2", "-o", "refcount_bits=64"}, new String[] {"-O", "qcow2", "-o", "preallocation=full"},
                new String[] {"-O", "qcow2", "-o", "preallocation=metadata"});
        int compared = 0;
        for (Path src : List.of(empty, partly, full, raw, bitmaps)) {
            for (String[] opts : optionSets) {
                sameMeasure(concat(concat(new String[] {"measure"}, opts), src.toString()));
                compared++;
            }
        }
        for (String size : List.of("1G", "1000", "100G")) {
            for (String[] opts : optionSets) {
                String[] args = concat(concat(new String[] {"measure", "--size", size}, opts));
                QemuTools.Result q = QemuTools.run(cmd("qemu-img", args)).expect(0);
                QblkRunner.Result m = QblkRunner.run(args);
                assertEquals(q.out(), m.out(), String.join(" ", args));
                compared++;
            }
        }
        assertEquals(5 * 11 + 3 * 11, compared);
        // the figures themselves for one case: 1 GiB of 64k clusters needs 6 metadata clusters
        assertEquals("required size: 393216\nfully allocated size: 1074135040\n",
                QblkRunner.run("measure", "-O", "qcow2", "--size", "1G").out());
        assertTrue(QblkRunner.run("measure", "-O", "qcow2", bitmaps.toString()).out().contains("bitmaps size: 327680"));

        QblkRunner.Result neither = QblkRunner.run("measure");
        assertEquals(1, neither.exitCode());
        assertTrue(neither.err().contains("either --size SIZE or one FILE"), neither.err());
        QblkRunner.Result both = QblkRunner.run("measure", "--size", "1G", partly.toString());
        assertEquals(1, both.exitCode());
        assertTrue(both.err().contains("cannot be used together"), both.err());
    }

    /**
     * Sources that "look metadata-preallocated" to qemu (more clusters in use than allocated file
     * blocks): qemu asks the file system about their data clusters and counts holes as zeroes, so
     * the required size counts only the clusters written; qblk makes the same guess.
     */
    @Test
    void measureOfMetadataPreallocatedSources() throws Exception {
        List<Path> sources = new ArrayList<>();
        int i = 0;
        for (String[] c : new String[][] {{"64M", "cluster_size=65536"}, {"16M", "cluster_size=4096"}, {"8M", "cluster_size=512"}, {"100M", "cluster_size=2M"}}) {
            Path p = dir.resolve("pm" + i++ + ".qcow2");
            QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", c[1] + ",preallocation=metadata", p.toString(), c[0]).expect(0);
            sources.add(p);
            Path w = dir.resolve("pmw" + i + ".qcow2");
            QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", c[1] + ",preallocation=metadata", w.toString(), c[0]).expect(0);
            QemuTools.qemuIo(w, false, "write -P 1 0 64k", "write -P 2 1M 4k", "write -P 3 3M 512").expect(0);
            sources.add(w);
        }
        sources.add(partly("notprealloc.qcow2")); // the guess says no: data clusters count whole
        int compared = 0;
        for (Path src : sources) {
            for (String[] opts : List.of(new String[] {"-O", "qcow2"}, new String[] {"-O", "qcow2", "-o", "cluster_size=4k", "--output=json"},
                    new String[] {"-O", "qcow2", "-o", "preallocation=metadata"})) {
                sameMeasure(concat(concat(new String[] {"measure"}, opts), src.toString()));
                compared++;
            }
        }
        assertEquals(9 * 3, compared);
    }

    /**
     * A chain measures as a flattened copy would: qemu-img measure of the top file walks the whole
     * chain, and judges every qcow2 layer's "looks metadata-preallocated" on its own (a preallocated
     * base's unwritten clusters are holes in its file, so they count as zeroes); a raw layer's holes
     * are zeroes too. qcow2 over qcow2 and over raw, two and three levels, preallocated base, middle
     * or top: qblk prints what qemu-img prints.
     */
    @Test
    void measureOfChains() throws Exception {
        List<Path> tops = new ArrayList<>();
        // qcow2 over a metadata-preallocated qcow2 with data, 64k and 4k clusters
        for (String cs : new String[] {"65536", "4096"}) {
            Path base = dir.resolve("pbase" + cs + ".qcow2");
            QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=" + cs + ",preallocation=metadata", base.toString(), "32M").expect(0);
            QemuTools.qemuIo(base, false, "write -P 1 0 64k", "write -P 2 1M 4k", "write -P 3 5M 512").expect(0);
            tops.add(overlay("ptop" + cs + ".qcow2", base, "qcow2", "write -P 4 8M 64k", "write -P 5 1M 4k"));
        }
        // a preallocated base without data, and a preallocated overlay (extended L2) over a plain base
        Path empty = dir.resolve("pempty.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", empty.toString(), "16M").expect(0);
        tops.add(overlay("pemptytop.qcow2", empty, "qcow2", "write -P 6 3M 8k"));
        Path plain = qcow2("plainbase.qcow2", "16M", "write -P 7 0 128k", "write -P 8 9M 4k");
        Path ptop = dir.resolve("preallocated-top.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", plain.toString(), "-F", "qcow2", "-o", "preallocation=metadata,extended_l2=on", ptop.toString()).expect(0); // qemu: only with extended L2
        QemuTools.qemuIo(ptop, false, "write -P 9 4M 64k").expect(0);
        tops.add(ptop);
        // qcow2 over a sparse raw file with data; three levels over it
        Path raw = dir.resolve("base.raw");
        QemuTools.run("qemu-img", "create", "-q", "-f", "raw", raw.toString(), "16M").expect(0);
        QemuTools.run("qemu-io", "-f", "raw", "-c", "write -P 10 2M 64k", "-c", "write -P 11 7M 4k", raw.toString()).expect(0);
        Path overRaw = overlay("overraw.qcow2", raw, "raw", "write -P 12 0 4k");
        tops.add(overRaw);
        tops.add(overlay("overraw2.qcow2", overRaw, "qcow2", "write -P 13 12M 64k"));
        // three levels: preallocated base (512-byte clusters), a middle with data, a top with data
        Path pb = dir.resolve("pb512.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512,preallocation=metadata", pb.toString(), "8M").expect(0);
        QemuTools.qemuIo(pb, false, "write -P 14 0 4k", "write -P 15 6M 512").expect(0);
        Path mid = overlay("mid.qcow2", pb, "qcow2", "write -P 16 1M 64k");
        tops.add(overlay("top3.qcow2", mid, "qcow2", "write -P 17 2M 4k", "write -z 0 4k"));
        int compared = 0;
        for (Path top : tops) {
            for (String[] opts : List.of(new String[] {"-O", "qcow2"}, new String[] {"-O", "qcow2", "-o", "cluster_size=4k", "--output=json"},
                    new String[] {"-O", "qcow2", "-o", "preallocation=metadata"}, new String[] {"-O", "raw"})) {
                sameMeasure(concat(concat(new String[] {"measure"}, opts), top.toString()));
                compared++;
            }
        }
        assertEquals(7 * 4, compared);
    }

    /** A qcow2 overlay {@code name} over {@code backing} (of format {@code fmt}), written with qemu-io {@code writes}. */
    private Path overlay(String name, Path backing, String fmt, String... writes) {
        Path p = dir.resolve(name);
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", backing.toString(), "-F", fmt, p.toString()).expect(0);
        if (writes.length > 0) QemuTools.qemuIo(p, false, writes).expect(0);
        return p;
    }

    /** qemu-img and qblk print the same for {@code args} (a measure of a FILE), both with exit 0. */
    private static void sameMeasure(String[] args) {
        QemuTools.Result q = QemuTools.run(cmd("qemu-img", args)).expect(0);
        QblkRunner.Result m = QblkRunner.run(args);
        assertEquals(0, m.exitCode(), m.err());
        assertEquals(q.out(), m.out(), String.join(" ", args));
    }

    // ------------------------------------------------------------------ convert

    /** Converts with qemu-img and qblk alike and asserts: identical contents, clean check, same allocation shape. */
    private void convertLikeQemu(List<Path> inputs, String fmt, String... opts) {
        Path q = dir.resolve("q." + fmt), m = dir.resolve("m." + fmt);
        try {
            Files.deleteIfExists(q);
            Files.deleteIfExists(m);
        } catch (java.io.IOException e) {
            throw new AssertionError(e);
        }
        List<String> tail = new ArrayList<>(Arrays.asList(opts));
        tail.addAll(List.of("-O", fmt));
        inputs.forEach(p -> tail.add(p.toString()));
        List<String> qc = new ArrayList<>(List.of("qemu-img", "convert"));
        qc.addAll(tail);
        qc.add(q.toString());
        QemuTools.run(qc).expect(0);
        List<String> mc = new ArrayList<>(List.of("convert"));
        mc.addAll(tail);
        mc.add(m.toString());
        QblkRunner.Result r = QblkRunner.run(mc.toArray(String[]::new));
        String what = "convert " + String.join(" ", tail);
        assertEquals(0, r.exitCode(), what + ": " + r.err());
        QemuTools.Result same = QemuTools.run("qemu-img", "compare", "-f", fmt, "-F", fmt, q.toString(), m.toString());
        assertEquals(0, same.exitCode(), what + ": " + same.out() + same.err());
        if (inputs.size() == 1 && !tail.contains("-B")) {
            same = QemuTools.run("qemu-img", "compare", "-F", fmt, inputs.getFirst().toString(), m.toString());
            assertEquals(0, same.exitCode(), what + " vs its input: " + same.out() + same.err());
        }
        if (fmt.equals("qcow2")) assertEquals(0, QemuTools.run("qemu-img", "check", m.toString()).exitCode(), what + ": check");
        assertEquals(mapShape(q, fmt), mapShape(m, fmt), what);
    }

    @Test
    void convertMatchesQemuImgContentsAndSparseness() throws Exception {
        Path a = partly("a.qcow2");
        Path raw = dir.resolve("a.raw");
        QemuTools.run("qemu-img", "convert", "-O", "raw", a.toString(), raw.toString()).expect(0);
        Path base = qcow2("base.qcow2", "8M", "write -P 9 0 4M");
        Path overlay = dir.resolve("ov.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base.toString(), "-F", "qcow2", overlay.toString()).expect(0);
        QemuTools.qemuIo(overlay, false, "write -P 7 1M 128k", "write -z 2M 64k", "write -P 0 3M 64k").expect(0);

        for (String fmt : List.of("qcow2", "raw")) {
            convertLikeQemu(List.of(a), fmt);
            convertLikeQemu(List.of(raw), fmt);
            convertLikeQemu(List.of(a), fmt, "-S", "0");
            convertLikeQemu(List.of(a), fmt, "-S", "64k");
            convertLikeQemu(List.of(a), fmt, "-S", "1k");
            convertLikeQemu(List.of(overlay), fmt);
            convertLikeQemu(List.of(a, raw, overlay), fmt);
        }
        convertLikeQemu(List.of(a), "qcow2", "-o", "cluster_size=512");
        convertLikeQemu(List.of(a), "qcow2", "-o", "cluster_size=512", "-S", "8k");
        convertLikeQemu(List.of(raw), "qcow2", "-o", "cluster_size=2M,compat=0.10");
        convertLikeQemu(List.of(overlay), "qcow2", "-B", base.toString(), "-F", "qcow2");
        // -B results read like their source through the new backing file
        QemuTools.run("qemu-img", "compare", overlay.toString(), dir.resolve("m.qcow2").toString()).expect(0);
        assertTrue(QemuTools.run("qemu-img", "info", dir.resolve("m.qcow2").toString()).expect(0).out()
                .contains("backing file: " + base), "overlay names its backing file");
        convertLikeQemu(List.of(a), "qcow2", "-B", base.toString(), "-F", "qcow2");
        QemuTools.run("qemu-img", "compare", a.toString(), dir.resolve("m.qcow2").toString()).expect(0);
    }

    @Test
    void convertIntoAnExistingImageAndRefusals() throws Exception {
        Path a = partly("a.qcow2");
        Path q = qcow2("nq.qcow2", "8M", "write -P 8 0 8M");
        Path m = dir.resolve("nm.qcow2");
        Files.copy(q, m);
        QemuTools.run("qemu-img", "convert", "-n", "-O", "qcow2", a.toString(), q.toString()).expect(0);
        QblkRunner.Result r = QblkRunner.run("convert", "-n", "-O", "qcow2", a.toString(), m.toString());
        assertEquals(0, r.exitCode(), r.err());
        QemuTools.run("qemu-img", "compare", a.toString(), m.toString()).expect(0);
        QemuTools.run("qemu-img", "check", m.toString()).expect(0);
        assertEquals(mapShape(q, "qcow2"), mapShape(m, "qcow2"));

        Path out = dir.resolve("c.qcow2");
        r = QblkRunner.run("convert", "-c", "-O", "raw", a.toString(), out.toString());
        assertEquals(1, r.exitCode());
        assertEquals("qblk: Compression not supported for this file format\n", r.err());
        assertFalse(Files.exists(out));
        r = QblkRunner.run("convert", "-S", "1000", "-O", "qcow2", a.toString(), out.toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("invalid -S 1000"), r.err());
        r = QblkRunner.run("convert", "-O", "qcow2", "-B", a.toString(), a.toString(), out.toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("-F"), r.err());
        r = QblkRunner.run("convert", "-O", "qcow2", a.toString(), a.toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("output is also an input"), r.err());
        Path hardLink = Files.createLink(dir.resolve("a-link.qcow2"), a); // the same file under another name
        r = QblkRunner.run("convert", "-n", "-O", "qcow2", a.toString(), hardLink.toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("output is also an input"), r.err());
        // -B with a backing file that does not open: refused before OUT is created, nothing left behind
        r = QblkRunner.run("convert", "-O", "qcow2", "-B", "missing-base.qcow2", "-F", "qcow2", a.toString(), out.toString());
        assertEquals(1, r.exitCode());
        assertEquals(1, r.err().lines().count(), r.err());
        assertTrue(r.err().contains("could not open backing file missing-base.qcow2"), r.err());
        assertFalse(r.err().contains("Exception"), r.err());
        assertFalse(Files.exists(out), "convert -B with a missing backing file left " + out + " behind");
        Path notQcow2 = Files.write(dir.resolve("not-qcow2.raw"), new byte[4096]);
        r = QblkRunner.run("convert", "-O", "qcow2", "-B", notQcow2.toString(), "-F", "qcow2", a.toString(), out.toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("could not open backing file"), r.err());
        assertFalse(Files.exists(out), "convert -B with a backing file of the wrong format left " + out + " behind");
        QemuTools.run("qemu-img", "check", a.toString()).expect(0);
        Path small = qcow2("small.qcow2", "1M");
        r = QblkRunner.run("convert", "-n", "-O", "qcow2", a.toString(), small.toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("smaller than the input"), r.err());
        assertFalse(r.err().contains("Exception"), r.err());
    }

    // ------------------------------------------------------------------ create -b, info --backing-chain

    private static byte[] head(Path p, int n) throws Exception {
        return Arrays.copyOf(Files.readAllBytes(p), n);
    }

    @Test
    void overlaysHaveQemuImgsHeaderAndReadThroughToTheBacking() throws Exception {
        Path base = qcow2("base.qcow2", "8M", "write -P 0x33 1M 64k");
        Path rawBase = dir.resolve("base.raw");
        QemuTools.run("qemu-img", "create", "-q", "-f", "raw", rawBase.toString(), "1M").expect(0);
        Files.createDirectories(dir.resolve("sub"));
        String[][] variants = {
                {"-b", base.toString(), "-F", "qcow2", "%s"},
                {"-b", "base.qcow2", "-F", "qcow2", "%s", "16M"},
                {"-b", "../base.qcow2", "-F", "qcow2", "sub/%s"},
                {"-b", "base.raw", "-F", "raw", "%s"},
                {"-o", "compat=0.10", "-b", "base.qcow2", "-F", "qcow2", "%s"},
                {"-o", "cluster_size=4k", "-b", "/nonexistent/x.qcow2", "-F", "qcow2", "-u", "%s", "1G"},
        };
        int i = 0;
        for (String[] v : variants) {
            String name = "o" + i++ + ".qcow2";
            String[] mine = new String[v.length], qemu = new String[v.length];
            for (int k = 0; k < v.length; k++) {
                mine[k] = v[k].contains("%s") ? dir.resolve(v[k].formatted("m" + name)).toString() : v[k];
                qemu[k] = v[k].contains("%s") ? dir.resolve(v[k].formatted("q" + name)).toString() : v[k];
            }
            QemuTools.run(cmd("qemu-img", concat(new String[] {"create", "-q", "-f", "qcow2"}, qemu))).expect(0);
            QblkRunner.Result r = QblkRunner.run(concat(new String[] {"create", "-q", "-f", "qcow2"}, mine));
            assertEquals(0, r.exitCode(), String.join(" ", mine) + ": " + r.err());
            Path m = Path.of(Arrays.stream(mine).filter(s -> s.endsWith("m" + name)).findFirst().orElseThrow());
            Path q = Path.of(Arrays.stream(qemu).filter(s -> s.endsWith("q" + name)).findFirst().orElseThrow());
            assertArrayEquals(head(q, 4096), head(m, 4096), "header of " + String.join(" ", v));
            if (!String.join(" ", v).contains("/nonexistent")) QemuTools.run("qemu-img", "check", m.toString()).expect(0);
        }
        // reads through the overlay reach the backing file's data (qemu-io and qblk io)
        Path o = dir.resolve("mo0.qcow2");
        QemuTools.qemuIo(o, true, "read -P 0x33 1M 64k", "read -P 0 0 1M").expect(0);
        assertEquals(0, QblkRunner.run("io", "-r", "-c", "read -P 0x33 1M 64k", o.toString()).exitCode());
        assertTrue(QemuTools.run("qemu-img", "info", dir.resolve("mo1.qcow2").toString()).expect(0).out()
                .contains("virtual size: 16 MiB"));
        assertTrue(QemuTools.run("qemu-img", "info", o.toString()).expect(0).out().contains("virtual size: 8 MiB"),
                "size defaults to the backing file's");

        QblkRunner.Result r = QblkRunner.run("create", "-f", "qcow2", "-b", base.toString(), dir.resolve("x.qcow2").toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("without backing format"), r.err());
        r = QblkRunner.run("create", "-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", dir.resolve("x.qcow2").toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("could not open backing file missing.qcow2"), r.err());
        r = QblkRunner.run("create", "-f", "qcow2", "-u", "-b", "missing.qcow2", "-F", "qcow2", dir.resolve("x.qcow2").toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("needs a SIZE"), r.err());
        assertFalse(Files.exists(dir.resolve("x.qcow2")));
    }

    @Test
    void infoBackingChainMatchesQemuImg() throws Exception {
        Path rawBase = dir.resolve("base.raw");
        QemuTools.run("qemu-img", "create", "-q", "-f", "raw", rawBase.toString(), "4M").expect(0);
        Path mid = dir.resolve("mid.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", mid.toString()).expect(0);
        Files.createDirectories(dir.resolve("sub"));
        Path top = dir.resolve("sub/top.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "../mid.qcow2", "-F", "qcow2", top.toString(), "8M").expect(0);
        for (String[] opts : List.of(new String[] {}, new String[] {"--output=json"}, new String[] {"--backing-chain"},
                new String[] {"--backing-chain", "--output=json"})) {
            String[] args = concat(concat(new String[] {"info"}, opts), top.toString());
            String q = QemuTools.run(cmd("qemu-img", args)).expect(0).out();
            QblkRunner.Result m = QblkRunner.run(args);
            assertEquals(0, m.exitCode(), m.err());
            // disk usage may differ by the file system's allocation; everything else is the same text
            assertEquals(q.replaceAll("(disk size: .*|\"actual-size\": \\d+)", ""), m.out().replaceAll("(disk size: .*|\"actual-size\": \\d+)", ""),
                    String.join(" ", args));
        }
        String chain = QblkRunner.run("info", "--backing-chain", top.toString()).out();
        assertTrue(chain.contains("backing file: ../mid.qcow2 (actual path: " + dir + "/sub/../mid.qcow2)"), chain);
        assertTrue(chain.contains("\n\nimage: " + dir + "/sub/../mid.qcow2\n"), chain);
        assertTrue(chain.contains("file format: raw"), chain);
    }
}
