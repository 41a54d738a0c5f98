package io.qblk.service;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** Cross-field rules of device definitions, and sizes. */
class DeviceSpecsTest {
    static DeviceSpec build(DeviceSpecs.Draft d) throws DeviceSpecs.Invalid {
        return DeviceSpecs.build(d, "qblk.devices." + d.name() + ".", "127.0.0.1:10809", Path::of);
    }

    @Test
    void defaultsAndNullTarget() throws Exception {
        DeviceSpec s = build(new DeviceSpecs.Draft("d1", "/x.qcow2", null, null, null, null, null, null, null, null));
        assertEquals(io.qblk.target.ImageFormat.QCOW2, s.target());
        assertEquals(FrontendType.NBD, s.frontend());
        assertEquals("127.0.0.1:10809", s.nbdAddress());
        assertEquals(0, s.createSize());
        DeviceSpec n = build(new DeviceSpecs.Draft("n", null, "null", "nbd", 2, 64, true, "[::1]:0", "1G", null));
        assertEquals(1L << 30, n.createSize());
        assertNull(n.image());
    }

    @Test
    void cacheIsParsedPerDeviceAndNullMeansTheFrontendDefault() throws Exception {
        assertNull(build(new DeviceSpecs.Draft("d", "/d.qcow2", null, "ublk", null, null, null, null, null, null)).cache());
        assertEquals(io.qblk.io.CacheMode.WRITEBACK,
                build(new DeviceSpecs.Draft("d", "/d.qcow2", null, "ublk", null, null, null, null, null, "writeback")).cache());
        assertEquals(io.qblk.io.CacheMode.NONE, build(new DeviceSpecs.Draft("d", "/d.qcow2", null, null, null, null, null, null, null, "none")).cache());
        var e = assertThrows(DeviceSpecs.Invalid.class, () -> build(new DeviceSpecs.Draft("d", "/d.qcow2", null, null, null, null, null, null, null, "direct")));
        assertEquals("qblk.devices.d.cache", e.errors().getFirst().field());
    }

    @Test
    void everyProblemIsReportedWithItsKey() {
        var e = assertThrows(DeviceSpecs.Invalid.class, () -> build(
                new DeviceSpecs.Draft("x", null, "qcow2", "ublk", 65, 0, null, "127.0.0.1:99999", "1000", null)));
        var fields = e.errors().stream().map(ApiException.FieldError::field).toList();
        assertEquals(java.util.List.of("qblk.devices.x.queues", "qblk.devices.x.depth", "qblk.devices.x.nbd-address",
                "qblk.devices.x.create-size", "qblk.devices.x.image"), fields);
        var json = assertThrows(DeviceSpecs.Invalid.class, () -> DeviceSpecs.build(
                new DeviceSpecs.Draft("ok", null, "null", null, null, null, null, "a:1", "3", null), "", "h:1", Path::of));
        assertEquals("createSize", json.errors().getFirst().field());
        var ublkAddress = assertThrows(DeviceSpecs.Invalid.class, () -> build(
                new DeviceSpecs.Draft("u", "/i", null, "ublk", null, null, null, "h:1", null, null)));
        assertTrue(ublkAddress.getMessage().contains("only applies to the nbd frontend"));
    }

    /** create-size uses the one size grammar ({@link io.qblk.util.Sizes}); errors name the key. */
    @Test
    void createSizeGrammar() throws Exception {
        java.util.Map<String, Long> good = java.util.Map.of("512M", 512L << 20, "8G", 8L << 30, "8GiB", 8L << 30,
                "8g", 8L << 30, "1.5G", 3L << 29, "0x100000", 1L << 20, "1073741824", 1L << 30, "4096b", 4096L);
        for (var e : good.entrySet())
            assertEquals(e.getValue(), createSize(e.getKey()).createSize(), e.getKey());
        for (String bad : new String[] {"8GB", "8 G", "8X", "-1G", "0.1k", "99999999999P", "0x10k", "lots"}) {
            var e = assertThrows(DeviceSpecs.Invalid.class, () -> createSize(bad), bad);
            assertEquals("qblk.devices.c.create-size", e.errors().getFirst().field(), bad);
            assertTrue(e.errors().getFirst().message().contains("'" + bad + "'"), e.errors().getFirst().message());
        }
        var odd = assertThrows(DeviceSpecs.Invalid.class, () -> createSize("1000"));
        assertTrue(odd.errors().getFirst().message().contains("multiple of 512"), odd.getMessage());
    }

    private static DeviceSpec createSize(String size) throws DeviceSpecs.Invalid {
        return build(new DeviceSpecs.Draft("c", "/c.qcow2", null, null, null, null, null, null, size, null));
    }
}
