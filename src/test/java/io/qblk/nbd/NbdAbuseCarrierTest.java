package io.qblk.nbd;

/** {@link NbdAbuseTest} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdAbuseCarrierTest extends NbdAbuseTest implements NbdVariant.OnCarrier {
}
