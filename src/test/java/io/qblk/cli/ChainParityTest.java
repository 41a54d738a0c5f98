package io.qblk.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * resize, commit, rebase and amend against qemu-img as the oracle: each scenario is built twice with
 * qemu's tools (directories q and m), qemu-img runs the command in q and qblk in m; stdout and exit
 * codes must be equal, the results must be identical for {@code qemu-img compare} (through their
 * backing chains), and {@code qemu-img check} must be clean. Mixed chains (raw base, qcow2 overlays),
 * and the other direction: images qblk changed are then changed and checked by qemu's tools.
 */
class ChainParityTest {
    @TempDir
    Path dir;

    private Path q, m;
    /** qemu-img's result in the last {@link #both}. */
    private QemuTools.Result lastQemu;

    private void dirs(String name) throws Exception {
        q = Files.createDirectories(dir.resolve(name + "-q"));
        m = Files.createDirectories(dir.resolve(name + "-m"));
    }

    /** Runs {@code build} (qemu tool commands with {@code %d} for the directory) in both directories. */
    private void build(String... commands) {
        for (Path d : List.of(q, m)) {
            for (String c : commands) {
                List<String> args = new ArrayList<>();
                for (String a : c.split(" ")) args.add(a.replace("%d", d.toString()).replace("%s", " "));
                QemuTools.run(args).expect(0);
            }
        }
    }

    /** raw base (4M, pattern 1) <- mid.qcow2 (2M..3M pattern 2, zero 3M+64k) <- top.qcow2 (pattern 3 across, zero at 0). */
    private void chain() {
        build("qemu-img create -q -f raw %d/base.raw 4M",
                "qemu-io -f raw -c write%s-P%s1%s0%s4M %d/base.raw",
                "qemu-img create -q -f qcow2 -b base.raw -F raw %d/mid.qcow2",
                "qemu-io -c write%s-P%s2%s1M%s1M -c write%s-z%s3M%s64k %d/mid.qcow2",
                "qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 %d/top.qcow2",
                "qemu-io -c write%s-P%s3%s1536k%s1M -c write%s-z%s0%s64k -c write%s-P%s4%s3968k%s700 %d/top.qcow2");
    }

    private static String[] with(String[] args, Path d) {
        return Arrays.stream(args).map(a -> a.replace("%d", d.toString())).toArray(String[]::new);
    }

    /** qemu-img in q and qblk in m; same stdout and exit code; returns qblk's result. */
    private QblkRunner.Result both(String cmd, String... args) {
        List<String> qa = new ArrayList<>(List.of("qemu-img", cmd));
        qa.addAll(Arrays.asList(with(args, q)));
        QemuTools.Result qr = QemuTools.run(qa);
        lastQemu = qr;
        List<String> ma = new ArrayList<>(List.of(cmd));
        ma.addAll(Arrays.asList(with(args, m)));
        QblkRunner.Result mr = QblkRunner.run(ma.toArray(String[]::new));
        String what = cmd + " " + String.join(" ", args);
        assertEquals(qr.exitCode(), mr.exitCode(), what + ": exit code; qemu-img said " + qr.err() + "; qblk said " + mr.err());
        assertEquals(qr.out(), mr.out(), what + ": stdout");
        if (mr.exitCode() != 0) assertTrue(!mr.err().isBlank() && !mr.err().contains("Exception"), what + ": " + mr.err());
        return mr;
    }

    private void sameContents(String image) {
        QemuTools.run("qemu-img", "compare", q.resolve(image).toString(), m.resolve(image).toString()).expect(0);
        if (image.endsWith(".qcow2")) clean(m.resolve(image));
    }

    private static void clean(Path p) {
        String out = QemuTools.run("qemu-img", "check", p.toString()).expect(0).out();
        assertTrue(out.contains("No errors were found"), out);
    }

    private static String info(Path p, String field) {
        String json = QemuTools.run("qemu-img", "info", "--output=json", p.toString()).expect(0).out();
        java.util.regex.Matcher mt = java.util.regex.Pattern.compile("\"" + field + "\": (\"[^\"]*\"|[a-z0-9]+)").matcher(json);
        return mt.find() ? mt.group(1) : null;
    }

    // ------------------------------------------------------------------ resize

    @Test
    void resizeMatchesQemuImg() throws Exception {
        String[][] cases = {
                // the L1 table must move: 512-byte clusters map 32 KiB per L1 entry
                {"-o cluster_size=512", "1M", "+63M"}, {"", "1M", "3G"}, {"", "4M", "--shrink %d/img 1536k"},
                {"-o compat=0.10", "4M", "--shrink %d/img 1049088"}, {"", "4M", "%d/img 1M"}, {"", "4M", "--shrink %d/img -1M"},
                {"", "4M", "%d/img -5M"}, {"", "4M", "%d/img 1000x"}, {"", "4M", "%d/img 4M"}, {"", "4M", "--preallocation=full %d/img +1M"},
                {"", "4M", "--shrink --preallocation=full %d/img 1M"},
                // shrinks past whole L2 tables (512-byte clusters: 32 KiB per table): they go too, and the file is cut
                {"-o cluster_size=512", "4M", "--shrink %d/img 100k"}, {"-o cluster_size=512,refcount_bits=64", "2M", "--shrink %d/img 32k"},
                // refcount blocks that count nothing after the shrink leave the table, as in qemu (R16):
                // with 4k clusters a block counts 8 MiB of file (2 MiB with 64-bit refcounts), with 512-byte ones 128 KiB (256 KiB with 8-bit)
                {"-o cluster_size=4k", "20M", "--shrink %d/img 1M"}, {"-o cluster_size=4k,refcount_bits=64", "8M", "--shrink %d/img 100k"},
                {"-o cluster_size=512,refcount_bits=8", "3M", "--shrink %d/img 1536k"}, {"-o cluster_size=512", "4M", "--shrink %d/img 0"},
        };
        int i = 0;
        for (String[] c : cases) {
            dirs("resize" + i++);
            String opts = c[0].isEmpty() ? "" : c[0].replace(" ", "%s").replace("-o%s", "-o ") + " ";
            build("qemu-img create -q -f qcow2 " + opts + "%d/img " + c[1],
                    "qemu-io -c write%s-P%s7%s0%s" + c[1] + " -c write%s-z%s64k%s64k %d/img");
            String[] args = c[2].contains("%d") ? c[2].split(" ") : new String[] {"%d/img", c[2]};
            long before = Files.size(m.resolve("img"));
            QblkRunner.Result r = both("resize", args);
            if (r.exitCode() == 0) {
                assertEquals(info(q.resolve("img"), "virtual-size"), info(m.resolve("img"), "virtual-size"));
                sameContents("img");
                // a shrink drops the refcount blocks that count nothing (R16) and cuts the file after its
                // last cluster in use (R14), as qemu does: the same file size at every cluster size
                long qs = Files.size(q.resolve("img")), ms = Files.size(m.resolve("img"));
                if (c[2].contains("--shrink")) {
                    assertEquals(qs, ms, String.join(" ", c) + ": file size (before " + before + ")");
                    assertTrue(ms < before, String.join(" ", c) + ": the file was not cut");
                }
                // the other direction: qemu writes into what qblk grew or shrank, and checks it
                String size = info(m.resolve("img"), "virtual-size");
                QemuTools.qemuIo(m.resolve("img"), false, "write -P 9 " + (Long.parseLong(size) - 512) + " 512").expect(0);
                clean(m.resolve("img"));
            }
        }
        // the shrink refusal prints qemu-img's two lines
        dirs("shrinkmsg");
        build("qemu-img create -q -f qcow2 %d/img 4M");
        QemuTools.Result qr = QemuTools.run("qemu-img", "resize", q.resolve("img").toString(), "1M");
        QblkRunner.Result mr = QblkRunner.run("resize", m.resolve("img").toString(), "1M");
        assertEquals(qr.err().replace("qemu-img: ", "qblk: "), mr.err());
    }

    /** qemu-img 7.2 grows and shrinks images with internal snapshots; the snapshots keep their contents. */
    @Test
    void resizeWithSnapshots() throws Exception {
        String[] sizes = {"+4M", "12M", "--shrink %d/img 1M", "--shrink %d/img 3000k"};
        int i = 0;
        for (String size : sizes) {
            dirs("resizesnap" + i++);
            build("qemu-img create -q -f qcow2 -o cluster_size=4k %d/img 4M", "qemu-io -c write%s-P%s5%s0%s4M %d/img",
                    "qemu-img snapshot -c sn1 %d/img", "qemu-io -c write%s-P%s6%s1M%s2M %d/img");
            String[] args = size.contains("%d") ? size.split(" ") : new String[] {"%d/img", size};
            both("resize", args);
            sameContents("img");
            if (size.contains("--shrink")) assertEquals(Files.size(q.resolve("img")), Files.size(m.resolve("img")), size + ": file size");
            // the snapshot still holds what it held: qemu applies it in both (back to its own size)
            QemuTools.run("qemu-img", "snapshot", "-a", "sn1", q.resolve("img").toString()).expect(0);
            QemuTools.run("qemu-img", "snapshot", "-a", "sn1", m.resolve("img").toString()).expect(0);
            sameContents("img");
            QemuTools.qemuIo(m.resolve("img"), true, "read -P 5 0 4M").expect(0);
        }
    }

    @Test
    void resizeRawAndOverlays() throws Exception {
        dirs("raw");
        build("qemu-img create -q -f raw %d/r.raw 1M", "qemu-io -f raw -c write%s-P%s5%s0%s1M %d/r.raw");
        both("resize", "-f", "raw", "%d/r.raw", "+3M");
        sameContents("r.raw");
        assertEquals(4L << 20, Files.size(m.resolve("r.raw")));
        both("resize", "-f", "raw", "%d/r.raw", "512K");
        both("resize", "-f", "raw", "--shrink", "%d/r.raw", "512K");
        sameContents("r.raw");
        assertEquals(512L << 10, Files.size(m.resolve("r.raw")));

        // an overlay smaller than its backing file: the grown area reads zeroes, not the backing file's data
        dirs("ov");
        build("qemu-img create -q -f raw %d/base.raw 4M", "qemu-io -f raw -c write%s-P%s1%s0%s4M %d/base.raw",
                "qemu-img create -q -f qcow2 -b base.raw -F raw %d/ov.qcow2 1M");
        both("resize", "%d/ov.qcow2", "4M");
        sameContents("ov.qcow2");
        QemuTools.qemuIo(m.resolve("ov.qcow2"), true, "read -P 0 1M 3M").expect(0);

        // qblk makes, qblk grows, qemu grows further and checks
        dirs("mine");
        assertEquals(0, QblkRunner.run("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", m.resolve("a.qcow2").toString(), "1M").exitCode());
        QemuTools.qemuIo(m.resolve("a.qcow2"), false, "write -P 3 0 1M").expect(0);
        assertEquals(0, QblkRunner.run("resize", m.resolve("a.qcow2").toString(), "8G").exitCode());
        QemuTools.run("qemu-img", "resize", m.resolve("a.qcow2").toString(), "+8G").expect(0);
        QemuTools.qemuIo(m.resolve("a.qcow2"), false, "read -P 3 0 1M", "write -P 4 12G 64k", "read -P 0 1M 1M").expect(0);
        clean(m.resolve("a.qcow2"));
    }

    // ------------------------------------------------------------------ commit

    @Test
    void commitMatchesQemuImg() throws Exception {
        String[][] cases = {{"%d/top.qcow2"}, {"-d", "%d/top.qcow2"}, {"-b", "base.raw", "%d/top.qcow2"}, {"-b", "%d/mid.qcow2", "%d/top.qcow2"},
                {"%d/mid.qcow2"}, {"-f", "raw", "%d/base.raw"}, {"-b", "nope", "%d/top.qcow2"}, {"-q", "%d/top.qcow2"}};
        int i = 0;
        for (String[] c : cases) {
            dirs("commit" + i++);
            chain();
            QblkRunner.Result r = both("commit", c);
            if (r.exitCode() != 0) continue;
            for (String img : List.of("base.raw", "mid.qcow2", "top.qcow2")) sameContents(img);
        }
        // progress: qemu-img's first and last figures
        dirs("commitp");
        chain();
        QblkRunner.Result p = QblkRunner.run("commit", "-p", m.resolve("top.qcow2").toString());
        assertEquals(0, p.exitCode(), p.err());
        assertTrue(p.out().startsWith("    (0.00/100%)\r") && p.out().endsWith("    (100.00/100%)\r\nImage committed.\n"), p.out());
        // the other direction: a chain qblk made, committed by qblk, then written by qemu
        dirs("mine");
        assertEquals(0, QblkRunner.run("create", "-q", "-f", "qcow2", m.resolve("b.qcow2").toString(), "2M").exitCode());
        assertEquals(0, QblkRunner.run("create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", m.resolve("t.qcow2").toString()).exitCode());
        QemuTools.qemuIo(m.resolve("t.qcow2"), false, "write -P 6 64k 128k").expect(0);
        assertEquals(0, QblkRunner.run("commit", m.resolve("t.qcow2").toString()).exitCode());
        QemuTools.qemuIo(m.resolve("b.qcow2"), true, "read -P 6 64k 128k").expect(0);
        QemuTools.qemuIo(m.resolve("t.qcow2"), false, "read -P 6 64k 128k", "write -P 8 0 4k").expect(0);
        clean(m.resolve("b.qcow2"));
        clean(m.resolve("t.qcow2"));
        String map = QemuTools.run("qemu-img", "map", "--output=json", m.resolve("t.qcow2").toString()).expect(0).out();
        assertTrue(map.contains("\"depth\": 1"), "emptied overlay reads its backing file: " + map);
    }

    // ------------------------------------------------------------------ rebase

    @Test
    void rebaseMatchesQemuImg() throws Exception {
        String[][] cases = {{"-b", "base.raw", "-F", "raw", "%d/top.qcow2"}, {"-b", "", "%d/top.qcow2"}, {"-b", "", "%d/mid.qcow2"},
                {"-u", "-b", "base.raw", "-F", "raw", "%d/top.qcow2"}, {"-b", "base.raw", "%d/top.qcow2"}, {"%d/top.qcow2"},
                {"-b", "nope.qcow2", "-F", "qcow2", "%d/top.qcow2"}, {"-p", "-b", "base.raw", "-F", "raw", "%d/top.qcow2"}};
        int i = 0;
        for (String[] c : cases) {
            dirs("rebase" + i++);
            chain();
            QblkRunner.Result r = both("rebase", c);
            if (r.exitCode() != 0) continue;
            for (String img : List.of("base.raw", "mid.qcow2", "top.qcow2")) {
                sameContents(img);
                if (img.endsWith("qcow2")) {
                    assertEquals(info(q.resolve(img), "backing-filename"), info(m.resolve(img), "backing-filename"), img);
                    assertEquals(info(q.resolve(img), "backing-filename-format"), info(m.resolve(img), "backing-filename-format"), img);
                }
            }
        }
        // safe rebase really copied: top now reads right on base alone, and qemu can rebase it back
        dirs("back");
        chain();
        QemuTools.run("qemu-img", "convert", "-O", "raw", m.resolve("top.qcow2").toString(), m.resolve("expect.raw").toString()).expect(0);
        assertEquals(0, QblkRunner.run("rebase", "-b", "base.raw", "-F", "raw", m.resolve("top.qcow2").toString()).exitCode());
        QemuTools.run("qemu-img", "compare", "-F", "raw", m.resolve("top.qcow2").toString(), m.resolve("expect.raw").toString()).expect(0);
        QemuTools.run("qemu-img", "rebase", "-b", "mid.qcow2", "-F", "qcow2", m.resolve("top.qcow2").toString()).expect(0);
        QemuTools.run("qemu-img", "compare", "-F", "raw", m.resolve("top.qcow2").toString(), m.resolve("expect.raw").toString()).expect(0);
        clean(m.resolve("top.qcow2"));
    }

    // ------------------------------------------------------------------ amend

    @Test
    void amendMatchesQemuImg() throws Exception {
        String[][] cases = {{"-o", "compat=0.10", "%d/top.qcow2"}, {"-o", "compat=0.10", "%d/solo.qcow2"},
                {"-o", "lazy_refcounts=on", "%d/solo.qcow2"}, {"-o", "compat=0.10,lazy_refcounts=on", "%d/solo.qcow2"},
                {"-o", "compat=2", "%d/solo.qcow2"}, {"-o", "foo=1", "%d/solo.qcow2"}, {"%d/solo.qcow2"},
                {"-o", "size=8M", "%d/solo.qcow2"}, {"-o", "lazy_refcounts=x", "%d/solo.qcow2"},
                {"-f", "raw", "-o", "compat=1.1", "%d/base.raw"}, {"-o", "cluster_size=4k", "%d/solo.qcow2"}};
        int i = 0;
        for (String[] c : cases) {
            dirs("amend" + i++);
            chain();
            build("qemu-img create -q -f qcow2 %d/solo.qcow2 4M", "qemu-io -c write%s-P%s2%s0%s1M -c write%s-z%s1M%s1M -c write%s-z%s-u%s3M%s64k %d/solo.qcow2");
            QblkRunner.Result r = both("amend", c);
            if (r.exitCode() != 0) continue;
            String img = c[c.length - 1].replace("%d/", "");
            sameContents(img);
            for (String f : List.of("compat", "lazy-refcounts", "virtual-size", "refcount-bits"))
                assertEquals(info(q.resolve(img), f), info(m.resolve(img), f), img + " " + f);
            // back up to 1.1, then qemu writes into it
            assertEquals(0, QblkRunner.run("amend", "-o", "compat=1.1", m.resolve(img).toString()).exitCode());
            QemuTools.qemuIo(m.resolve(img), false, "write -z 128k 64k", "write -P 5 2M 4k").expect(0);
            clean(m.resolve(img));
        }
    }

    /**
     * amend -o refcount_bits=N (docs/ordering.md R15) as qemu-img 7.2 does it: every width up and down
     * on images with and without internal snapshots and with small clusters; qemu-img's messages and
     * exit codes for bad widths, for compat 0.10 and for a refcount the new width cannot hold (the
     * image then unchanged); and both directions: qemu-img amends what qblk made and qblk what qemu-img made.
     */
    @Test
    void amendRefcountBitsMatchesQemuImg() throws Exception {
        String[][] images = {
                {"plain", "qemu-img create -q -f qcow2 %d/img 8M", "qemu-io -c write%s-P%s2%s0%s3M -c write%s-z%s4M%s1M -c write%s-c%s-P%s3%s6M%s64k %d/img"},
                {"small", "qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 %d/img 2M", "qemu-io -c write%s-P%s4%s0%s1536k %d/img"},
                {"4k", "qemu-img create -q -f qcow2 -o cluster_size=4k,refcount_bits=2 %d/img 8M", "qemu-io -c write%s-P%s5%s1M%s5M %d/img"},
                {"snap", "qemu-img create -q -f qcow2 -o cluster_size=4k %d/img 4M", "qemu-io -c write%s-P%s6%s0%s2M %d/img",
                        "qemu-img snapshot -c s1 %d/img", "qemu-io -c write%s-P%s7%s512k%s64k %d/img"},
        };
        String[] all = {"1", "2", "4", "8", "16", "32", "64"}, some = {"1", "8", "64"};
        int i = 0, changed = 0, refused = 0, cases = 0;
        for (String[] image : images) {
            String[] widths = image[0].equals("plain") || image[0].equals("snap") ? all : some;
            cases += widths.length;
            for (String w : widths) {
                dirs("refbits" + i++);
                build(Arrays.copyOfRange(image, 1, image.length));
                String before = QemuTools.sha256(m.resolve("img"));
                QblkRunner.Result r = both("amend", "-o", "refcount_bits=" + w, "%d/img");
                if (r.exitCode() != 0) {
                    // a refcount of 2 (the snapshot) in 1 bit: qemu-img's message, nothing changed
                    assertEquals("snap 1", image[0] + " " + w, r.err());
                    assertTrue(r.err().startsWith("qblk: Cannot decrease refcount entry width to 1 bits: Cluster at offset 0x"), r.err());
                    assertEquals(lastQemu.err().replace("qemu-img: ", "qblk: ").strip(), r.err().strip());
                    assertEquals(before, QemuTools.sha256(m.resolve("img")), "a refused amend changed the image");
                    refused++;
                    continue;
                }
                changed++;
                assertEquals(w, info(m.resolve("img"), "refcount-bits"), image[0]);
                assertEquals(info(q.resolve("img"), "refcount-bits"), info(m.resolve("img"), "refcount-bits"), image[0]);
                sameContents("img");
                clean(m.resolve("img"));
                if (image[0].equals("snap")) sameSnapshots("img");
                // the other direction: qemu-img amends qblk's image back, qblk amends qemu-img's, qemu writes into both
                QemuTools.run("qemu-img", "amend", "-o", "refcount_bits=16", m.resolve("img").toString()).expect(0);
                assertEquals(0, QblkRunner.run("amend", "-o", "refcount_bits=16", q.resolve("img").toString()).exitCode());
                for (Path d : List.of(q, m)) {
                    assertEquals("16", info(d.resolve("img"), "refcount-bits"));
                    QemuTools.qemuIo(d.resolve("img"), false, "write -P 9 64k 128k").expect(0);
                    clean(d.resolve("img"));
                }
                sameContents("img");
            }
        }
        assertEquals(cases - 1, changed);
        assertEquals(1, refused);
        // bad widths and compat 0.10: the same messages and exit codes
        String[][] bad = {{"-o", "refcount_bits=3", "%d/img"}, {"-o", "refcount_bits=0", "%d/img"}, {"-o", "refcount_bits=128", "%d/img"},
                {"-o", "refcount_bits=abc", "%d/img"}, {"-o", "refcount_bits=", "%d/img"}, {"-o", "refcount_bits=-16", "%d/img"},
                {"-o", "refcount_bits=8k", "%d/img"}, {"-o", "compat=0.10,refcount_bits=8", "%d/img"}, {"-o", "compat=0.10", "%d/img"},
                {"-o", "refcount_bits=0x10", "%d/img"}, {"-o", "refcount_bits=010", "%d/img"}, {"-o", "compat=0.10,refcount_bits=16", "%d/img"}};
        for (String[] b : bad) {
            dirs("refbad" + i++);
            build("qemu-img create -q -f qcow2 -o refcount_bits=32 %d/img 4M", "qemu-io -c write%s-P%s2%s0%s1M %d/img");
            QblkRunner.Result mr = both("amend", b);
            assertEquals(lastQemu.err().replace("qemu-img: ", "qblk: ").strip(), mr.err().strip(), String.join(" ", b));
            if (mr.exitCode() == 0) {
                sameContents("img");
                clean(m.resolve("img"));
                for (String f : List.of("compat", "refcount-bits")) assertEquals(info(q.resolve("img"), f), info(m.resolve("img"), f), String.join(" ", b));
            }
        }
    }

    // ------------------------------------------------------------------ internal snapshots

    /** The chain of {@link #chain()} with an internal snapshot in top.qcow2 and one in mid.qcow2, in both directories. */
    private void chainWithSnapshots() {
        chain();
        build("qemu-img snapshot -c s1 %d/top.qcow2", "qemu-img snapshot -c s1 %d/mid.qcow2",
                // written after the snapshots: the active images and the snapshots differ
                "qemu-io -c write%s-P%s8%s2560k%s256k %d/top.qcow2", "qemu-io -c write%s-P%s9%s512k%s128k %d/mid.qcow2");
    }

    /** Each snapshot of {@code image} still reads the same in both directories (qemu-img applies it in copies). */
    private void sameSnapshots(String image) throws Exception {
        for (Path d : List.of(q, m)) {
            Files.copy(d.resolve(image), d.resolve("applied-" + image), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            QemuTools.run("qemu-img", "snapshot", "-a", "s1", d.resolve("applied-" + image).toString()).expect(0);
        }
        sameContents("applied-" + image);
    }

    /** qemu-img 7.2 commits, rebases and amends images with internal snapshots; so does qblk, with the same results. */
    @Test
    void chainOperationsOnImagesWithInternalSnapshots() throws Exception {
        String[][] cases = {{"commit", "%d/top.qcow2"}, {"commit", "-d", "%d/top.qcow2"}, {"rebase", "-b", "base.raw", "-F", "raw", "%d/top.qcow2"},
                {"rebase", "-u", "-b", "base.raw", "-F", "raw", "%d/top.qcow2"}, {"amend", "-o", "lazy_refcounts=on", "%d/top.qcow2"},
                {"resize", "%d/top.qcow2", "+1M"}};
        int i = 0;
        for (String[] c : cases) {
            dirs("snapchain" + i++);
            chainWithSnapshots();
            both(c[0], Arrays.copyOfRange(c, 1, c.length));
            for (String img : List.of("base.raw", "mid.qcow2", "top.qcow2")) sameContents(img);
            sameSnapshots("mid.qcow2");
            sameSnapshots("top.qcow2");
            // the other direction: qemu writes into what qblk changed
            QemuTools.qemuIo(m.resolve("top.qcow2"), false, "write -P 10 0 1M").expect(0);
            clean(m.resolve("top.qcow2"));
        }
        // compat upgrade of a version 2 image with a snapshot; the downgrade qblk refuses (qemu also
        // expands the snapshots' zero clusters), before anything changes
        dirs("snapamend");
        build("qemu-img create -q -f qcow2 -o compat=0.10 %d/v2.qcow2 4M", "qemu-io -c write%s-P%s3%s0%s1M %d/v2.qcow2",
                "qemu-img snapshot -c s1 %d/v2.qcow2", "qemu-io -c write%s-P%s4%s0%s64k %d/v2.qcow2");
        both("amend", "-o", "compat=1.1", "%d/v2.qcow2");
        sameContents("v2.qcow2");
        sameSnapshots("v2.qcow2");
        assertEquals("\"1.1\"", info(m.resolve("v2.qcow2"), "compat"));
        String before = QemuTools.sha256(m.resolve("v2.qcow2"));
        QblkRunner.Result r = QblkRunner.run("amend", "-o", "compat=0.10", m.resolve("v2.qcow2").toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("downgrading an image with internal snapshots is not supported") && r.err().lines().count() == 1, r.err());
        assertEquals(before, QemuTools.sha256(m.resolve("v2.qcow2")));
    }
}
