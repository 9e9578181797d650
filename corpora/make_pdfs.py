"""Regenerate the demo corpus's PDFs (committed, so users don't need fpdf2): python corpora/make_pdfs.py

Deterministic: fixed creation date and core fonts only, so the bytes don't change between runs.
"""

from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).parent / "acme"

RESULTS_PAGES = [
    (
        "First-quarter results 2031",
        [
            "Halvorsen Tidewater Instruments, quarter ending 31 March 2031. Confidential until 15 May 2031.",
            "Revenue for the quarter was NOK 41.3 million, up 18 percent on the first quarter of 2030.",
            "EBITDA was NOK 5.9 million, an EBITDA margin of 14.2 percent.",
            "The largest customer in the quarter was Nordhavn Aquaculture, with 22 percent of revenue.",
            "Revenue by product line: TideSense gauges NOK 19.7 million, Murre W2 buoys NOK 12.8 million and "
            "Harbourlink telemetry NOK 8.8 million. Harbourlink revenue is recurring and grew 31 percent.",
            "The launch of the TideSense T7 on 3 March 2031 added NOK 4.6 million of revenue in its first four weeks. "
            "Deliveries of the TideSense T6 continued to harbour customers in Norway.",
            "Gross margin was 46.5 percent, against 44.9 percent a year earlier, helped by a higher share of "
            "Harbourlink subscriptions.",
        ],
    ),
    (
        "Cash and investments",
        [
            "Cash at the end of the quarter was NOK 22.6 million.",
            "Capital expenditure was NOK 3.4 million, mostly the new calibration tank.",
            "The credit facility with Sparebanken Nordkyst is NOK 30 million, of which nothing is drawn.",
            "Operating cash flow was NOK 4.1 million. Receivables rose because of large T7 deliveries in late March; "
            "most of them fall due in April.",
            "After the quarter, the board approved the acquisition of Marelius Sensors for NOK 64 million, to be paid "
            "in cash and from the credit facility at closing, planned for 30 June 2031.",
        ],
    ),
    (
        "People and outlook",
        [
            "Headcount at 31 March 2031 was 212 people, of whom 58 work in engineering.",
            "Sick leave was 3.8 percent in the quarter.",
            "Guidance for the full year 2031 is revenue of NOK 175 to 185 million.",
            "Order intake in the quarter was NOK 36.8 million. The order backlog at the end of the quarter was "
            "NOK 58.2 million, of which NOK 21.5 million is Harbourlink subscriptions.",
            "The Aberdeen office opens on 12 May 2031; its set-up costs are in the second quarter.",
            "Prepared by Finance. Contact: Alice Brekke, CFO. Next report: second-quarter results on 14 August 2031.",
        ],
    ),
]

PRICE_LINES = [
    ("TideSense T7 tide gauge", "EUR 4,850 per unit"),
    ("TideSense T6 tide gauge", "EUR 3,900 per unit"),
    ("Murre W2 water-quality buoy", "EUR 12,400 per unit"),
    ("Harbourlink telemetry", "EUR 420 per station per year"),
    ("Three-year service plan", "EUR 1,150 per unit"),
]

PRICE_TERMS = [
    (
        "What is included",
        "Gauges and buoys are delivered calibrated, with mounting brackets, one year of Harbourlink telemetry and "
        "a two-year warranty. Installation by our field service is quoted separately for each site.",
    ),
    (
        "Delivery",
        "Standard delivery time is 8 weeks from order for TideSense gauges and 12 weeks for Murre W2 buoys. "
        "Freight from Brennvik is charged at cost.",
    ),
    (
        "Currencies",
        "Customers in Norway are invoiced in NOK at the exchange rate on the day of the offer; customers in the "
        "British Isles are invoiced in GBP by HTI Marine Ltd in Aberdeen.",
    ),
    (
        "Previous prices",
        "The 2030 price list (TideSense T6 at EUR 3,750 per unit) no longer applies. Offers made before "
        "1 March 2031 stay valid for 60 days from the offer date.",
    ),
    (
        "Contact",
        "Sales, Halvorsen Tidewater Instruments: sales@hti.example. Head of sales: Hana Lindqvist.",
    ),
]


def new_pdf(title: str) -> FPDF:
    pdf = FPDF()
    pdf.set_creation_date(datetime(2031, 4, 1, tzinfo=UTC))
    pdf.set_title(title)
    pdf.set_author("Halvorsen Tidewater Instruments")
    pdf.set_auto_page_break(True, margin=20)
    return pdf


def results_pdf(path: Path) -> None:
    pdf = new_pdf("Q1 2031 results")
    for heading, paragraphs in RESULTS_PAGES:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.cell(0, 12, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 7, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    pdf.output(str(path))


def price_list_pdf(path: Path) -> None:
    pdf = new_pdf("Price list 2031")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 12, "Price list 2031 (valid from 1 March 2031)", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    for product, price in PRICE_LINES:
        pdf.cell(100, 8, product)
        pdf.cell(0, 8, price, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.multi_cell(0, 7, "Volume discount: 7 percent for orders of 50 units or more. Prices exclude VAT and freight.")
    for heading, text in PRICE_TERMS:
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


if __name__ == "__main__":
    results_pdf(HERE / "finance" / "q1-2031-results.pdf")
    price_list_pdf(HERE / "sales" / "price-list-2031.pdf")
    print("wrote", HERE / "finance" / "q1-2031-results.pdf", "and", HERE / "sales" / "price-list-2031.pdf")
