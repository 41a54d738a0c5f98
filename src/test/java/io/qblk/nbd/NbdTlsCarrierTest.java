package io.qblk.nbd;

/** {@link NbdTlsTest} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdTlsCarrierTest extends NbdTlsTest implements NbdVariant.OnCarrier {
}
