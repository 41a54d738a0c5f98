package io.qblk.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.quarkus.test.junit.main.LaunchResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code qblk bitmap} against {@code qemu-img bitmap}: the same operations on copies of one image
 * give the same {@code info} (format-specific JSON equal, human lines equal), qemu-img check stays
 * clean, and qemu reads and edits what qblk wrote (and the other way round).
 */
class BitmapCliTest {
    @TempDir Path dir;
    static final ObjectMapper JSON = new ObjectMapper();

    static LaunchResult qblk(String... args) throws Exception {
        return CliInProcessTest.IN_PROCESS.launch(args);
    }

    static JsonNode specific(String json) throws Exception {
        return JSON.readTree(json).get("format-specific");
    }

    static void assertClean(Path img) {
        String out = QemuTools.run("qemu-img", "check", img.toString()).expect(0).out();
        assertTrue(out.contains("No errors were found") && !out.contains("lacking bitmap support"), out);
    }

    @Test
    void sameOperationsAsQemuImgGiveTheSameImageInfo() throws Exception {
        for (String cs : new String[] {"65536", "4096"}) {
            Path ours = dir.resolve("ours-" + cs + ".qcow2"), ref = dir.resolve("ref-" + cs + ".qcow2");
            QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=" + cs, ours.toString(), "64M").expect(0);
            QemuTools.qemuIo(ours, false, "write -P 3 0 1M").expect(0);
            Files.copy(ours, ref, StandardCopyOption.REPLACE_EXISTING);
            String[][] steps = {
                {"--add", "b0"}, {"--add", "-g", "128k", "b1"}, {"--add", "--disable", "b2"}, {"--enable", "b2"},
                {"--disable", "b1"}, {"--clear", "b0"}, {"--remove", "b0"}, {"--add", "-g", "512", "b3"}};
            for (String[] st : steps) {
                java.util.List<String> opts = java.util.List.of(st).subList(0, st.length - 1);
                String bm = st[st.length - 1];
                java.util.List<String> q = new java.util.ArrayList<>(java.util.List.of("qemu-img", "bitmap"));
                q.addAll(opts);
                q.addAll(java.util.List.of("-f", "qcow2", ref.toString(), bm));
                java.util.List<String> o = new java.util.ArrayList<>(java.util.List.of("bitmap"));
                o.addAll(opts);
                o.addAll(java.util.List.of("-f", "qcow2", ours.toString(), bm));
                String[] ours2 = o.toArray(String[]::new);
                QemuTools.run(q).expect(0);
                LaunchResult r = qblk(ours2);
                assertEquals(0, r.exitCode(), String.join(" ", ours2) + ": " + r.getErrorOutput());
                assertClean(ours);
                String qemuInfo = QemuTools.run("qemu-img", "info", "--output=json", ref.toString()).expect(0).out();
                LaunchResult mine = qblk("info", "--output=json", ours.toString());
                assertEquals(specific(qemuInfo), specific(mine.getOutput()), String.join(" ", st));
                assertEquals(specific(qemuInfo), specific(QemuTools.run("qemu-img", "info", "--output=json", ours.toString()).expect(0).out()),
                        "qemu reads qblk's bitmaps: " + String.join(" ", st));
            }
            String qemuHuman = QemuTools.run("qemu-img", "info", ref.toString()).expect(0).out();
            String mine = qblk("info", ours.toString()).getOutput();
            String tail = qemuHuman.substring(qemuHuman.indexOf("Format specific information:"));
            assertTrue(mine.contains(tail.strip()), mine + "\n---\n" + tail);
            // qemu edits what qblk wrote
            QemuTools.run("qemu-img", "bitmap", "--remove", ours.toString(), "b3").expect(0);
            QemuTools.run("qemu-img", "bitmap", "--remove", ours.toString(), "b1").expect(0);
            assertClean(ours);
            assertEquals(0, qblk("bitmap", "--remove", ours.toString(), "b2").exitCode());
            assertClean(ours);
            assertTrue(qblk("info", "--output=json", ours.toString()).getOutput().indexOf("bitmaps") < 0);
        }
    }

    @Test
    void errorsAsQemuImg() throws Exception {
        Path img = dir.resolve("e.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "16M").expect(0);
        LaunchResult r = qblk("bitmap", "--remove", img.toString(), "nope");
        assertEquals(1, r.exitCode());
        assertTrue(r.getErrorOutput().contains("not found"), r.getErrorOutput());
        assertEquals(0, qblk("bitmap", "--add", img.toString(), "x").exitCode());
        r = qblk("bitmap", "--add", img.toString(), "x");
        assertEquals(1, r.exitCode());
        assertTrue(r.getErrorOutput().contains("already exists"), r.getErrorOutput());
        r = qblk("bitmap", "--add", "-g", "1000", img.toString(), "y");
        assertEquals(1, r.exitCode());
        assertTrue(r.getErrorOutput().contains("Granularity"), r.getErrorOutput());
        r = qblk("bitmap", img.toString(), "y");
        assertEquals(1, r.exitCode());
        assertClean(img);
        Path v2 = dir.resolve("v2.qcow2");
        QemuTools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2.toString(), "16M").expect(0);
        assertEquals(1, qblk("bitmap", "--add", v2.toString(), "x").exitCode());
    }
}
