#!/usr/bin/env python3
"""Seeded generator of synthetic BRFSS "Nutrition, Physical Activity, and Obesity" rows.

The project ships its own data instead of CDC rows: every row written here is made up, but
it has the layout of the assignment's original file (column names, order and spelling,
``Gender`` instead of ``Sex``, ``Sample_Size`` written as ``2599.0``) and realistic values.

Model. The data set is a grid of *cells* (year, location, question, stratification segment);
each cell gets one value::

    question mean + trend * (year - 2016) + location effect + segment effect + noise

clipped to 1.0-80.0, plus a sample size and a logit-scale 95% confidence interval.
The parameters below were estimated once from the CDC public file (2011-2022 rows) by an
additive least-squares fit; only those summary numbers are kept, no CDC row is copied.
The 0.5% of cells with the smallest samples are suppressed (empty value, footnote ``~``).

Sampling. Rows are drawn from the cells without replacement in a seeded shuffle, so a file
of up to ``CELL_COUNT`` rows never repeats a cell; the first pass puts one published cell of
every (location, question) pair among the rows, so even a small sample has a value for each.
Longer files go on with fresh shuffles of the same cells. Exactly one row (chosen by the
seed) has its stratification left empty, as in the assignment's file.

Only the standard library is used so that the bytes for a seed do not depend on a numpy
version. Run ``python data/generate.py --help`` for the command line.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, TextIO

HEADER: tuple[str, ...] = (
    "YearStart",
    "YearEnd",
    "LocationAbbr",
    "LocationDesc",
    "Datasource",
    "Class",
    "Topic",
    "Question",
    "Data_Value_Unit",
    "Data_Value_Type",
    "Data_Value",
    "Data_Value_Alt",
    "Data_Value_Footnote_Symbol",
    "Data_Value_Footnote",
    "Low_Confidence_Limit",
    "High_Confidence_Limit ",
    "Sample_Size",
    "Total",
    "Age(years)",
    "Education",
    "Gender",
    "Income",
    "Race/Ethnicity",
    "GeoLocation",
    "ClassID",
    "TopicID",
    "QuestionID",
    "DataValueTypeID",
    "LocationID",
    "StratificationCategory1",
    "Stratification1",
    "StratificationCategoryId1",
    "StratificationID1",
)

DEFAULT_ROWS = 18650
DEFAULT_SEED = 2024
DEFAULT_OUT = Path(__file__).resolve().parent / "sample.csv"

DATASOURCE = "Behavioral Risk Factor Surveillance System"
DATASOURCE_SHORT = "BRFSS"  # the original file spells the source this way on its 2022 rows
SHORT_DATASOURCE_YEARS = frozenset({2022})
SUPPRESSED_SYMBOL = "~"
SUPPRESSED_FOOTNOTE = "Data not available because sample size is insufficient."
SUPPRESSED_SHARE = 0.005
MIN_VALUE = 1.0
MAX_VALUE = 80.0
REFERENCE_YEAR = 2016
MIN_SAMPLE_SIZE = 50  # the CDC publishes no estimate from fewer respondents
Z_95 = 1.96
DESIGN_EFFECT = 1.36  # median ratio of the published CI width to the simple binomial width
DESIGN_EFFECT_SPREAD = 0.15  # standard deviation of its logarithm
CHUNK_ROWS = 50_000

ALL_YEARS = tuple(range(2011, 2023))
ODD_YEARS = tuple(range(2011, 2023, 2))
FRUIT_VEGETABLE_YEARS = (2017, 2019, 2021)


class Question(NamedTuple):
    """One survey question; ``mean`` is the expected Total value in ``REFERENCE_YEAR``."""

    question_id: str
    class_id: str
    topic_id: str
    class_name: str
    topic: str
    text: str
    mean: float
    trend: float
    years: tuple[int, ...]


class Location(NamedTuple):
    """A "state"; ``sample_size`` is its typical Total sample, ``effects`` align with QUESTIONS."""

    abbr: str
    name: str
    location_id: str
    sample_size: int
    effects: tuple[float, ...]


class Category(NamedTuple):
    """A stratification category; ``noise`` and ``size_noise`` are residual spreads of the
    value (percentage points) and of the log sample size within it."""

    name: str
    category_id: str
    column: str
    noise: float
    size_noise: float


class Segment(NamedTuple):
    """A stratification segment; ``share`` is its typical fraction of the Total sample and
    ``effects`` (aligned with QUESTIONS) its offset from the Total value."""

    category: str
    name: str
    segment_id: str
    share: float
    effects: tuple[float, ...]


QUESTIONS: tuple[Question, ...] = (
    Question(
        "Q018",
        "FV",
        "FV1",
        "Fruits and Vegetables",
        "Fruits and Vegetables - Behavior",
        "Percent of adults who report consuming fruit less than one time daily",
        36.5,
        0.95,
        FRUIT_VEGETABLE_YEARS,
    ),
    Question(
        "Q019",
        "FV",
        "FV1",
        "Fruits and Vegetables",
        "Fruits and Vegetables - Behavior",
        "Percent of adults who report consuming vegetables less than one time daily",
        18.6,
        0.47,
        FRUIT_VEGETABLE_YEARS,
    ),
    Question(
        "Q036",
        "OWS",
        "OWS1",
        "Obesity / Weight Status",
        "Obesity / Weight Status",
        "Percent of adults aged 18 years and older who have obesity",
        30.1,
        0.60,
        ALL_YEARS,
    ),
    Question(
        "Q037",
        "OWS",
        "OWS1",
        "Obesity / Weight Status",
        "Obesity / Weight Status",
        "Percent of adults aged 18 years and older who have an overweight classification",
        35.2,
        -0.15,
        ALL_YEARS,
    ),
    Question(
        "Q043",
        "PA",
        "PA1",
        "Physical Activity",
        "Physical Activity - Behavior",
        "Percent of adults who achieve at least 150 minutes a week of moderate-intensity"
        " aerobic physical activity or 75 minutes a week of vigorous-intensity aerobic"
        " activity (or an equivalent combination)",
        50.8,
        -0.07,
        ODD_YEARS,
    ),
    Question(
        "Q044",
        "PA",
        "PA1",
        "Physical Activity",
        "Physical Activity - Behavior",
        "Percent of adults who achieve at least 150 minutes a week of moderate-intensity"
        " aerobic physical activity or 75 minutes a week of vigorous-intensity aerobic"
        " physical activity and engage in muscle-strengthening activities on 2 or more days"
        " a week",
        20.9,
        0.21,
        ODD_YEARS,
    ),
    Question(
        "Q045",
        "PA",
        "PA1",
        "Physical Activity",
        "Physical Activity - Behavior",
        "Percent of adults who achieve at least 300 minutes a week of moderate-intensity"
        " aerobic physical activity or 150 minutes a week of vigorous-intensity aerobic"
        " activity (or an equivalent combination)",
        31.7,
        0.02,
        ODD_YEARS,
    ),
    Question(
        "Q046",
        "PA",
        "PA1",
        "Physical Activity",
        "Physical Activity - Behavior",
        "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week",
        31.2,
        0.61,
        ODD_YEARS,
    ),
    Question(
        "Q047",
        "PA",
        "PA1",
        "Physical Activity",
        "Physical Activity - Behavior",
        "Percent of adults who engage in no leisure-time physical activity",
        24.8,
        -0.01,
        ALL_YEARS,
    ),
)

# Effects are in QUESTIONS order: Q018, Q019, Q036, Q037, Q043, Q044, Q045, Q046, Q047.
LOCATIONS: tuple[Location, ...] = (
    Location("AL", "Alabama", "1", 6240, (5.4, 0.0, 4.5, -0.9, -5.7, -3.8, -5.0, -3.8, 4.3)),
    Location("AK", "Alaska", "2", 3310, (2.0, -0.7, -0.2, 0.6, 5.9, 3.7, 5.5, 4.2, -3.5)),
    Location("AZ", "Arizona", "4", 7920, (-0.3, 0.9, -0.9, 0.3, 2.0, 2.4, 1.8, 1.8, -1.7)),
    Location("AR", "Arkansas", "5", 4760, (5.7, 0.3, 4.5, -1.1, -5.0, -3.9, -2.9, -3.9, 5.6)),
    Location("CA", "California", "6", 10300, (-4.0, 2.0, -4.1, 1.0, 7.0, 3.2, 4.6, 2.7, -4.6)),
    Location("CO", "Colorado", "8", 10310, (-2.8, -0.2, -7.4, 0.6, 8.6, 5.5, 6.6, 5.0, -6.7)),
    Location("CT", "Connecticut", "9", 8250, (-5.0, 0.1, -2.3, 1.0, 0.3, 1.0, -0.2, 1.5, -0.7)),
    Location("DE", "Delaware", "10", 3700, (-2.4, 0.2, 1.5, 0.1, -1.9, 0.4, -1.2, 1.4, 2.2)),
    Location(
        "DC",
        "District of Columbia",
        "11",
        3720,
        (-5.3, -3.8, -5.4, -3.7, 3.6, 2.7, 1.3, 2.9, -4.5),
    ),
    Location("FL", "Florida", "12", 14050, (-2.7, 0.1, -2.9, 1.0, 1.3, 1.5, 1.8, 1.0, 1.3)),
    Location("GA", "Georgia", "13", 6450, (1.2, -1.1, 0.6, -0.5, -1.6, 0.4, -1.2, 1.6, 1.3)),
    Location("HI", "Hawaii", "15", 7270, (1.0, 1.5, -5.2, -0.7, 6.9, 3.9, 6.1, 3.8, -3.8)),
    Location("ID", "Idaho", "16", 5220, (-1.0, -3.9, -1.0, 0.6, 4.6, 0.9, 4.0, 0.1, -3.1)),
    Location("IL", "Illinois", "17", 5080, (-2.5, 1.0, 0.3, -0.2, 0.4, 1.2, -0.8, 1.4, 0.0)),
    Location("IN", "Indiana", "18", 8350, (2.0, 0.9, 3.0, -1.3, -5.1, -2.6, -3.9, -1.5, 3.0)),
    Location("IA", "Iowa", "19", 7450, (-0.4, 2.1, 2.8, -0.6, -2.4, -2.0, -3.3, -1.3, 0.6)),
    Location("KS", "Kansas", "20", 16740, (1.9, -0.8, 2.5, -0.3, -2.2, -1.7, -2.4, -1.9, 0.3)),
    Location("KY", "Kentucky", "21", 8010, (4.8, -1.9, 3.7, -1.1, -5.8, -2.5, -3.2, -2.5, 4.7)),
    Location("LA", "Louisiana", "22", 4650, (6.9, 4.2, 4.9, -1.3, -5.2, -2.6, -3.7, -2.7, 4.7)),
    Location("ME", "Maine", "23", 9680, (-4.6, -7.3, -0.8, 0.1, 3.0, -0.5, 3.3, -1.4, -1.2)),
    Location("MD", "Maryland", "24", 12280, (-3.3, 0.2, 0.0, 0.1, -0.7, 0.6, -2.1, 1.2, -0.8)),
    Location("MA", "Massachusetts", "25", 7590, (-5.2, -2.8, -4.8, 0.4, 1.2, 0.8, 0.6, 0.5, -0.8)),
    Location("MI", "Michigan", "26", 9870, (0.1, -0.8, 2.0, -0.7, 1.1, -0.2, 1.3, 0.3, -0.5)),
    Location("MN", "Minnesota", "27", 14690, (-3.6, 1.4, -1.1, 0.7, 2.2, 1.2, 1.0, 1.6, -2.8)),
    Location("MS", "Mississippi", "28", 5030, (7.3, 1.4, 6.3, -1.1, -9.8, -4.5, -7.4, -4.0, 7.3)),
    Location("MO", "Missouri", "29", 6760, (1.6, -1.8, 2.4, -1.1, -2.5, -2.5, -1.9, -3.2, 1.8)),
    Location("MT", "Montana", "30", 5950, (0.1, -3.7, -3.4, 1.2, 6.9, 3.1, 7.5, 2.5, -3.6)),
    Location("NE", "Nebraska", "31", 14740, (0.7, 1.5, 1.7, 0.5, -1.5, -0.9, -2.4, -0.3, 0.0)),
    Location("NV", "Nevada", "32", 3420, (1.5, 3.3, -2.2, 1.9, 0.9, 0.9, 1.1, 1.4, -0.5)),
    Location("NH", "New Hampshire", "33", 5750, (-4.7, -4.7, -1.8, 0.4, 3.9, 2.1, 3.5, 1.8, -2.5)),
    Location("NJ", "New Jersey", "34", 10420, (-4.8, 0.9, -3.1, 1.5, -1.6, 0.7, -1.2, 1.3, 2.1)),
    Location("NM", "New Mexico", "35", 6050, (0.8, 0.9, -1.2, 1.2, 4.9, 4.1, 4.0, 4.0, -2.7)),
    Location("NY", "New York", "36", 10980, (-4.0, 1.6, -3.8, 0.5, -1.9, -0.1, -1.5, 0.5, 1.8)),
    Location("NC", "North Carolina", "37", 5500, (-0.8, -2.8, 1.3, 0.5, -2.4, -1.3, -3.0, -1.2, -0.5)),
    Location("ND", "North Dakota", "38", 5220, (0.5, 1.6, 2.1, 0.7, -4.2, -2.4, -4.8, -1.2, 0.5)),
    Location("OH", "Ohio", "39", 11400, (1.5, -0.5, 2.4, -0.7, -1.3, -0.6, 0.0, 0.2, 1.7)),
    Location("OK", "Oklahoma", "40", 6120, (8.1, -0.4, 4.1, -0.4, -7.0, -4.1, -5.7, -4.7, 4.5)),
    Location("OR", "Oregon", "41", 5200, (-2.6, -3.1, -1.5, -0.4, 8.5, 2.9, 7.0, 1.3, -5.4)),
    Location("PA", "Pennsylvania", "42", 6120, (-1.9, -1.2, 0.5, -0.1, -0.8, -0.7, -1.0, -0.4, 0.1)),
    Location("RI", "Rhode Island", "44", 5320, (-3.9, 0.4, -2.0, 1.1, -1.9, -0.7, -1.8, -0.7, 1.1)),
    Location("SC", "South Carolina", "45", 10130, (1.9, -0.7, 2.6, -0.8, -1.6, -0.7, -0.9, -0.5, 1.3)),
    Location("SD", "South Dakota", "46", 6630, (0.3, -2.5, 1.5, 0.7, -0.5, -1.8, -0.9, -1.2, -1.7)),
    Location("TN", "Tennessee", "47", 5170, (2.9, -2.2, 3.1, -0.5, -6.8, -4.0, -5.0, -4.0, 4.3)),
    Location("TX", "Texas", "48", 10890, (0.4, 2.2, 2.1, 0.4, -4.9, -1.2, -5.0, -0.2, 1.6)),
    Location("UT", "Utah", "49", 10600, (-3.5, 0.3, -3.4, -0.7, 3.3, 2.3, 1.3, 3.3, -5.8)),
    Location("VT", "Vermont", "50", 5970, (-6.1, -6.0, -3.8, -0.7, 7.7, 2.4, 8.1, 1.2, -4.6)),
    Location("VA", "Virginia", "51", 8590, (-1.3, -2.4, 0.0, 0.1, -0.4, 1.2, -0.3, 2.0, -0.6)),
    Location("WA", "Washington", "53", 12060, (-3.5, -0.7, -2.0, 0.2, 5.3, 1.7, 4.1, 1.3, -5.1)),
    Location("WV", "West Virginia", "54", 5240, (6.3, -1.8, 6.4, -1.3, -2.7, -5.5, -0.3, -7.9, 4.2)),
    Location("WI", "Wisconsin", "55", 5260, (-1.5, 1.4, 1.8, 0.0, 4.7, 1.7, 3.0, 0.7, -2.4)),
    Location("WY", "Wyoming", "56", 4430, (2.4, -2.0, -1.5, 1.1, 3.2, 2.1, 3.3, 1.8, -1.0)),
    Location("US", "National", "59", 400840, (-1.1, 0.1, -0.6, 0.2, 0.3, 0.4, -0.1, 0.6, -0.3)),
    Location("GU", "Guam", "66", 1580, (4.9, 6.0, -0.1, -0.1, -3.0, 0.9, -0.7, 1.9, 3.2)),
    Location(
        "PR",
        "Puerto Rico",
        "72",
        5220,
        (13.4, 22.4, -0.3, 2.6, -19.8, -12.5, -16.0, -18.8, 17.9),
    ),
    Location("VI", "Virgin Islands", "78", 1250, (-2.1, 9.7, 0.4, -1.5, 0.0, 0.0, 0.0, 0.0, -1.7)),
)

CATEGORIES: tuple[Category, ...] = (
    Category("Total", "OVR", "Total", 1.6, 0.25),
    Category("Age (years)", "AGEYR", "Age(years)", 3.0, 0.30),
    Category("Education", "EDU", "Education", 2.8, 0.35),
    Category("Gender", "GEN", "Gender", 2.1, 0.25),
    Category("Income", "INC", "Income", 3.2, 0.40),
    Category("Race/Ethnicity", "RACE", "Race/Ethnicity", 5.7, 0.80),
)

SEGMENTS: tuple[Segment, ...] = (
    Segment("Total", "Total", "OVERALL", 1.0, (0.0,) * 9),
    Segment(
        "Age (years)",
        "18 - 24",
        "AGEYR1824",
        0.054,
        (4.5, 6.5, -12.4, -9.3, 2.8, 8.4, 0.1, 14.3, -7.8),
    ),
    Segment(
        "Age (years)",
        "25 - 34",
        "AGEYR2534",
        0.100,
        (2.2, 0.4, -1.3, -2.0, -1.1, 2.2, -4.1, 5.4, -4.7),
    ),
    Segment(
        "Age (years)",
        "35 - 44",
        "AGEYR3544",
        0.120,
        (-0.3, -2.2, 3.7, 0.5, -1.5, -0.3, -3.5, 0.2, -2.2),
    ),
    Segment(
        "Age (years)",
        "45 - 54",
        "AGEYR4554",
        0.159,
        (2.0, -0.9, 5.8, 1.4, -1.4, -1.7, -1.7, -3.3, 0.8),
    ),
    Segment(
        "Age (years)",
        "55 - 64",
        "AGEYR5564",
        0.213,
        (0.3, -0.7, 4.6, 2.3, -0.5, -3.0, 1.0, -5.5, 3.1),
    ),
    Segment(
        "Age (years)",
        "65 or older",
        "AGEYR65PLUS",
        0.342,
        (-5.7, -1.1, -2.4, 3.8, 1.9, -3.1, 6.8, -6.4, 7.3),
    ),
    Segment(
        "Education",
        "Less than high school",
        "EDUHS",
        0.069,
        (3.8, 11.8, 3.8, -1.6, -12.5, -8.0, -6.3, -9.0, 16.2),
    ),
    Segment(
        "Education",
        "High school graduate",
        "EDUHSGRAD",
        0.272,
        (4.3, 3.9, 2.2, -0.6, -4.1, -3.4, -1.5, -3.9, 5.6),
    ),
    Segment(
        "Education",
        "Some college or technical school",
        "EDUCOTEC",
        0.272,
        (0.9, -1.5, 1.7, -0.5, 1.2, 0.9, 0.5, 1.5, -2.0),
    ),
    Segment(
        "Education",
        "College graduate",
        "EDUCOGRAD",
        0.367,
        (-6.5, -6.6, -5.7, 1.9, 8.7, 6.2, 3.9, 6.7, -10.9),
    ),
    Segment(
        "Gender",
        "Male",
        "MALE",
        0.437,
        (3.3, 2.4, -0.1, 5.4, 1.2, 2.1, 1.7, 4.1, -1.9),
    ),
    Segment(
        "Gender",
        "Female",
        "FEMALE",
        0.560,
        (-3.1, -2.3, 0.0, -5.6, -1.1, -2.0, -1.6, -3.9, 1.8),
    ),
    Segment(
        "Income",
        "Less than $15,000",
        "INCLESS15",
        0.080,
        (5.8, 10.7, 5.0, -5.6, -9.5, -5.7, -4.9, -6.0, 13.2),
    ),
    Segment(
        "Income",
        "$15,000 - $24,999",
        "INC1525",
        0.131,
        (2.5, 6.1, 3.7, -2.6, -6.8, -4.3, -3.4, -4.4, 9.7),
    ),
    Segment(
        "Income",
        "$25,000 - $34,999",
        "INC2535",
        0.093,
        (1.4, 3.3, 2.2, -0.6, -3.6, -2.8, -1.7, -3.0, 5.0),
    ),
    Segment(
        "Income",
        "$35,000 - $49,999",
        "INC3550",
        0.119,
        (0.8, -0.1, 1.8, 0.7, -0.3, -0.8, 0.0, -0.7, 0.5),
    ),
    Segment(
        "Income",
        "$50,000 - $74,999",
        "INC5075",
        0.134,
        (0.1, -2.6, 1.2, 1.8, 2.4, 1.1, 0.9, 1.6, -4.0),
    ),
    Segment(
        "Income",
        "$75,000 or greater",
        "INC75PLUS",
        0.228,
        (-2.3, -5.9, -2.4, 2.7, 8.4, 5.8, 4.0, 6.3, -9.9),
    ),
    Segment(
        "Income",
        "Data not reported",
        "INCNR",
        0.162,
        (-0.4, 1.6, -4.3, -1.8, -2.8, -1.6, -0.8, -1.8, 2.0),
    ),
    Segment(
        "Race/Ethnicity",
        "2 or more races",
        "RACE2PLUS",
        0.018,
        (1.1, -0.7, 2.0, -2.8, 1.6, 3.3, 2.3, 5.1, -1.8),
    ),
    Segment(
        "Race/Ethnicity",
        "American Indian/Alaska Native",
        "RACENAA",
        0.018,
        (1.7, 0.5, 6.5, -2.1, -1.2, 1.2, 2.6, 1.7, 4.9),
    ),
    Segment(
        "Race/Ethnicity",
        "Asian",
        "RACEASN",
        0.022,
        (-1.7, -2.9, -18.5, -3.9, -2.7, -0.4, -5.4, 2.9, -3.0),
    ),
    Segment(
        "Race/Ethnicity",
        "Hawaiian/Pacific Islander",
        "RACEHPI",
        0.047,
        (3.2, 4.0, 11.5, -3.4, 0.0, 4.4, 0.8, 5.1, 1.1),
    ),
    Segment(
        "Race/Ethnicity",
        "Hispanic",
        "RACEHIS",
        0.047,
        (-2.8, 9.8, 2.1, 1.0, -6.6, -1.5, -5.5, 0.0, 4.5),
    ),
    Segment(
        "Race/Ethnicity",
        "Non-Hispanic Black",
        "RACEBLK",
        0.071,
        (2.2, 6.7, 7.7, -1.4, -5.2, 0.7, -3.7, 2.4, 4.0),
    ),
    Segment(
        "Race/Ethnicity",
        "Non-Hispanic White",
        "RACEWHT",
        0.733,
        (-0.2, -3.3, -1.7, 0.3, 2.5, 0.6, 1.9, 0.1, -2.1),
    ),
    Segment(
        "Race/Ethnicity",
        "Other",
        "RACEOTH",
        0.014,
        (-1.8, -2.6, -1.5, 0.5, 1.0, 2.9, 3.2, 4.5, 1.8),
    ),
)

CATEGORY_BY_NAME: dict[str, Category] = {category.name: category for category in CATEGORIES}
CELL_COUNT = sum(len(q.years) for q in QUESTIONS) * len(LOCATIONS) * len(SEGMENTS)


class Cell(NamedTuple):
    """One (year, location, question, segment) estimate; numbers are in tenths so that the
    text is exact. ``value`` is None when the estimate is suppressed."""

    year: int
    question: int
    location: int
    segment: int
    value: int | None
    low: int
    high: int
    sample_size: int


def _tenths(number: int) -> str:
    """Render a non-negative count of tenths with exactly one decimal."""
    return f"{number // 10}.{number % 10}"


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _make_cells(rng: random.Random) -> list[Cell]:
    """Draw every cell of the grid once; the cells depend on the seed only, never on the row
    count, so bigger files of one seed show the same population."""
    gauss = rng.gauss
    segments = [(segment, CATEGORY_BY_NAME[segment.category]) for segment in SEGMENTS]
    raw: list[tuple[int, int, int, int, int, float]] = []
    for q_index, question in enumerate(QUESTIONS):
        for year in question.years:
            base = question.mean + question.trend * (year - REFERENCE_YEAR)
            for l_index, location in enumerate(LOCATIONS):
                for s_index, (segment, category) in enumerate(segments):
                    value = base + location.effects[q_index] + segment.effects[q_index] + gauss(0.0, category.noise)
                    value_tenths = round(10 * min(MAX_VALUE, max(MIN_VALUE, value)))
                    size = location.sample_size * segment.share * math.exp(gauss(0.0, category.size_noise))
                    raw.append((year, q_index, l_index, s_index, value_tenths, size))

    suppressed_count = round(SUPPRESSED_SHARE * len(raw))
    by_size = sorted(range(len(raw)), key=lambda index: (raw[index][5], index))
    suppressed = set(by_size[:suppressed_count])

    cells: list[Cell] = []
    for index, (year, q_index, l_index, s_index, value_tenths, size) in enumerate(raw):
        design = DESIGN_EFFECT * math.exp(rng.gauss(0.0, DESIGN_EFFECT_SPREAD))
        if index in suppressed:
            cells.append(Cell(year, q_index, l_index, s_index, None, 0, 0, 0))
            continue
        sample_size = MIN_SAMPLE_SIZE + round(size)
        p = value_tenths / 1000.0
        half = Z_95 * design / math.sqrt(sample_size * p * (1.0 - p))
        low = round(1000.0 * _expit(_logit(p) - half))
        high = round(1000.0 * _expit(_logit(p) + half))
        cells.append(Cell(year, q_index, l_index, s_index, value_tenths, low, high, sample_size))
    return cells


@functools.lru_cache(maxsize=4)
def _population(seed: int) -> tuple[tuple[Cell, ...], tuple[object, ...]]:
    """The cells of a seed and the RNG state after drawing them, cached because drawing them
    is the slow part and callers often ask for several files of one seed."""
    rng = random.Random(seed)
    cells = _make_cells(rng)
    return tuple(cells), rng.getstate()


def _cell_fields(cell: Cell, stratified: bool = True) -> list[str]:
    """The row of one cell, in HEADER order."""
    question = QUESTIONS[cell.question]
    location = LOCATIONS[cell.location]
    segment = SEGMENTS[cell.segment]
    category = CATEGORY_BY_NAME[segment.category]
    row = {
        "YearStart": str(cell.year),
        "YearEnd": str(cell.year),
        "LocationAbbr": location.abbr,
        "LocationDesc": location.name,
        "Datasource": DATASOURCE_SHORT if cell.year in SHORT_DATASOURCE_YEARS else DATASOURCE,
        "Class": question.class_name,
        "Topic": question.topic,
        "Question": question.text,
        "Data_Value_Type": "Value",
        "ClassID": question.class_id,
        "TopicID": question.topic_id,
        "QuestionID": question.question_id,
        "DataValueTypeID": "VALUE",
        "LocationID": location.location_id,
    }
    if cell.value is None:
        row["Data_Value_Footnote_Symbol"] = SUPPRESSED_SYMBOL
        row["Data_Value_Footnote"] = SUPPRESSED_FOOTNOTE
    else:
        row["Data_Value"] = row["Data_Value_Alt"] = _tenths(cell.value)
        row["Low_Confidence_Limit"] = _tenths(cell.low)
        row["High_Confidence_Limit "] = _tenths(cell.high)
        row["Sample_Size"] = f"{cell.sample_size}.0"
    if stratified:
        row[category.column] = segment.name
        row["StratificationCategory1"] = category.name
        row["Stratification1"] = segment.name
        row["StratificationCategoryId1"] = category.category_id
        row["StratificationID1"] = segment.segment_id
    return [row.get(name, "") for name in HEADER]


def _plan(rows: int, seed: int) -> tuple[tuple[Cell, ...], Iterator[list[int]], int]:
    """Decide which cell each row shows: returns the cells, an iterator over chunks of cell
    indices (``rows`` in all) and the index of the row without stratification (-1 if none)."""
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    cells, state = _population(seed)
    rng = random.Random()
    rng.setstate(state)

    shuffled = list(range(len(cells)))
    rng.shuffle(shuffled)
    covered: set[tuple[int, int]] = set()
    cover: list[int] = []
    rest: list[int] = []
    for index in shuffled:
        cell = cells[index]
        pair = (cell.location, cell.question)
        if cell.value is not None and pair not in covered:
            covered.add(pair)
            cover.append(index)
        else:
            rest.append(index)
    ordered = cover + rest
    head = ordered[: min(rows, len(ordered))]
    rng.shuffle(head)  # spread the covering cells over the rows actually written
    first_pass = head + ordered[len(head) :]

    published = [row for row, index in enumerate(head) if cells[index].value is not None]
    unstratified = published[rng.randrange(len(published))] if published else -1

    def chunks() -> Iterator[list[int]]:
        order = first_pass
        remaining = rows
        while remaining > 0:
            take = min(remaining, len(order))
            for start in range(0, take, CHUNK_ROWS):
                yield order[start : min(start + CHUNK_ROWS, take)]
            remaining -= take
            if remaining:
                order = list(range(len(cells)))
                rng.shuffle(order)

    return cells, chunks(), unstratified


def generate_rows(rows: int, seed: int) -> Iterator[dict[str, str]]:
    """Yield ``rows`` rows as dicts keyed by HEADER; the same (rows, seed) gives the same rows."""
    cells, chunks, unstratified = _plan(rows, seed)
    row = 0
    for chunk in chunks:
        for index in chunk:
            yield dict(zip(HEADER, _cell_fields(cells[index], stratified=row != unstratified), strict=True))
            row += 1


def _csv_line(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def _write(out: TextIO, rows: int, seed: int) -> None:
    """Stream the CSV text; each cell's line is rendered once and reused, which is what makes
    multi-million-row files fast."""
    cells, chunks, unstratified = _plan(rows, seed)
    out.write(_csv_line(list(HEADER)))
    lines: list[str | None] = [None] * len(cells)
    row = 0
    for chunk in chunks:
        parts: list[str] = []
        for index in chunk:
            line = lines[index]
            if line is None:
                line = lines[index] = _csv_line(_cell_fields(cells[index]))
            parts.append(line)
        if row <= unstratified < row + len(chunk):
            offset = unstratified - row
            parts[offset] = _csv_line(_cell_fields(cells[chunk[offset]], stratified=False))
        out.write("".join(parts))
        row += len(chunk)


def write_csv(path_or_file: str | os.PathLike[str] | TextIO, rows: int, seed: int) -> None:
    """Write the header and ``rows`` rows as UTF-8 CSV with LF line ends.

    A path is opened (and its parent directories made) here; a file object must be a text
    stream, opened with ``newline=""`` so that the line ends are kept as written.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        path = Path(path_or_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as out:
            _write(out, rows, seed)
    else:
        _write(path_or_file, rows, seed)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write a seeded synthetic sample of the BRFSS nutrition/obesity CSV.",
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"data rows (default {DEFAULT_ROWS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        help="output file, '-' for stdout (default: data/sample.csv beside this script)",
    )
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.out == "-":
        sys.stdout.reconfigure(encoding="utf-8", newline="")  # type: ignore[union-attr]
        try:
            write_csv(sys.stdout, args.rows, args.seed)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (e.g. `| head`): silence the final flush at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        return 0
    started = time.perf_counter()
    write_csv(args.out, args.rows, args.seed)
    print(
        f"wrote {args.rows} rows (seed {args.seed}) to {args.out} in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
